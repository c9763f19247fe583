//! The simulated payment gateway: deterministic, so tests choose the
//! outcome with the payment token (named after Stripe's test tokens) and the
//! amount.
//!
//! | token | amount (minor units) | outcome | decline code |
//! |---|---|---|---|
//! | `tok_visa`, `tok_mastercard`, `tok_amex` | 0 ..= max | approved | |
//! | `tok_chargeDeclined` | 0 ..= max | declined | `card_declined` |
//! | `tok_chargeDeclinedInsufficientFunds` | 0 ..= max | declined | `insufficient_funds` |
//! | `tok_chargeDeclinedExpiredCard` | 0 ..= max | declined | `expired_card` |
//! | anything else | 0 ..= max | declined | `invalid_token` |
//! | any | > max | declined | `amount_too_large` |
//! | any | < 0 (never sent by the order service) | declined | `invalid_amount` |
//!
//! `max` is `PAYMENT_MAX_AMOUNT` (default 1,000,000). The amount checks come
//! first: an amount over the limit is declined whatever the token. A zero
//! amount is approved (nothing to charge, but the payment exists).

/// A gateway decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The charge went through.
    Approved,
    /// The charge was refused.
    Declined(Decline),
}

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// Machine-readable decline code, e.g. `card_declined`.
    pub code: &'static str,
    /// Human-readable message, e.g. `Your card was declined.`.
    pub message: String,
}

impl Decline {
    /// A decline with its code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Tokens that are always approved (within the amount limit).
pub const APPROVED_TOKENS: [&str; 3] = ["tok_visa", "tok_mastercard", "tok_amex"];

/// Charges `amount` minor units to `token`, refusing amounts over
/// `max_amount`.
pub fn charge(token: &str, amount: i64, max_amount: i64) -> Outcome {
    if amount < 0 {
        return Outcome::Declined(Decline::new(
            "invalid_amount",
            format!("The amount {amount} is negative."),
        ));
    }
    if amount > max_amount {
        return Outcome::Declined(Decline::new(
            "amount_too_large",
            format!("The amount {amount} exceeds the maximum of {max_amount} per payment."),
        ));
    }
    if APPROVED_TOKENS.contains(&token) {
        return Outcome::Approved;
    }
    Outcome::Declined(match token {
        "tok_chargeDeclined" => Decline::new("card_declined", "Your card was declined."),
        "tok_chargeDeclinedInsufficientFunds" => {
            Decline::new("insufficient_funds", "Your card has insufficient funds.")
        }
        "tok_chargeDeclinedExpiredCard" => Decline::new("expired_card", "Your card has expired."),
        _ => Decline::new("invalid_token", "The payment token is not valid."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: i64 = 1_000_000;

    fn code(token: &str, amount: i64) -> Option<&'static str> {
        match charge(token, amount, MAX) {
            Outcome::Approved => None,
            Outcome::Declined(d) => Some(d.code),
        }
    }

    #[test]
    fn test_cards_are_approved() {
        for token in APPROVED_TOKENS {
            assert_eq!(charge(token, 1999, MAX), Outcome::Approved, "{token}");
        }
    }

    #[test]
    fn declining_tokens_name_their_reason() {
        assert_eq!(
            charge("tok_chargeDeclined", 1999, MAX),
            Outcome::Declined(Decline::new("card_declined", "Your card was declined."))
        );
        assert_eq!(
            code("tok_chargeDeclinedInsufficientFunds", 1999),
            Some("insufficient_funds")
        );
        assert_eq!(
            code("tok_chargeDeclinedExpiredCard", 1999),
            Some("expired_card")
        );
        for token in ["", "tok_unknown", "TOK_VISA", "tok_visa "] {
            assert_eq!(code(token, 1999), Some("invalid_token"), "{token:?}");
        }
    }

    #[test]
    fn the_amount_limit_applies_to_every_token() {
        assert_eq!(code("tok_visa", MAX), None);
        assert_eq!(code("tok_visa", MAX + 1), Some("amount_too_large"));
        assert_eq!(
            code("tok_chargeDeclined", MAX + 1),
            Some("amount_too_large")
        );
        assert_eq!(code("garbage", MAX + 1), Some("amount_too_large"));
        assert_eq!(code("tok_visa", 50,), None);
        assert_eq!(charge("tok_visa", 50, 49), charge("tok_amex", 50, 49));
    }

    #[test]
    fn zero_is_approved_and_negative_is_refused() {
        assert_eq!(code("tok_visa", 0), None);
        assert_eq!(code("tok_visa", -1), Some("invalid_amount"));
    }

    #[test]
    fn the_gateway_is_deterministic() {
        for token in ["tok_visa", "tok_chargeDeclined", "nope"] {
            assert_eq!(charge(token, 10, MAX), charge(token, 10, MAX));
        }
    }
}

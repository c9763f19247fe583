//! Payment methods: their ids, what a registration may carry, and which
//! token an order is charged with.

use std::collections::HashMap;

use uuid::Uuid;

use super::gateway::Decline;

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 100;

/// A registered payment method as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// The customer it belongs to.
    pub customer_id: String,
    /// The card token.
    pub token: String,
}

/// A new payment method id: `pm_` and 32 hex digits, unguessable.
pub fn new_id() -> String {
    format!("pm_{}", Uuid::new_v4().simple())
}

/// Whether `id` has the shape of a payment method id.
pub fn is_id(id: &str) -> bool {
    id.strip_prefix("pm_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What is wrong with a token sent for registration, if anything: 1 to
/// [`MAX_TOKEN_LEN`] visible ASCII characters.
pub fn token_problem(token: &str) -> Option<String> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Some(format!("must be 1 to {MAX_TOKEN_LEN} characters"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("must be visible ASCII characters without spaces".to_owned());
    }
    None
}

/// The token to charge an order of `customer_id` with: the one of its
/// payment method, which must exist and belong to that customer, or (for an
/// event written before payment methods existed) the token it carried.
/// Anything else is declined with `invalid_payment_method`, saying no more
/// than that (a customer does not learn about another's methods).
pub fn token_for<'a>(
    method_id: Option<&str>,
    legacy_token: Option<&'a str>,
    customer_id: &str,
    methods: &'a HashMap<String, Method>,
) -> Result<&'a str, Decline> {
    let refused = || {
        Decline::new(
            "invalid_payment_method",
            "The payment method is unknown or belongs to another customer.",
        )
    };
    match (method_id, legacy_token) {
        (Some(id), _) => match methods.get(id) {
            Some(m) if m.customer_id == customer_id => Ok(&m.token),
            _ => Err(refused()),
        },
        (None, Some(token)) => Ok(token),
        (None, None) => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods() -> HashMap<String, Method> {
        HashMap::from([(
            "pm_a".to_owned(),
            Method {
                customer_id: "c-1".into(),
                token: "tok_visa".into(),
            },
        )])
    }

    #[test]
    fn an_order_is_charged_with_its_own_customers_method() {
        let m = methods();
        assert_eq!(token_for(Some("pm_a"), None, "c-1", &m), Ok("tok_visa"));
        // Another customer's method, an unknown one, or none at all.
        for (id, customer) in [(Some("pm_a"), "c-2"), (Some("pm_b"), "c-1"), (None, "c-1")] {
            let d = token_for(id, None, customer, &m).expect_err("refused");
            assert_eq!(d.code, "invalid_payment_method");
        }
    }

    #[test]
    fn an_event_from_before_v2_is_charged_with_its_token() {
        let m = methods();
        assert_eq!(token_for(None, Some("tok_amex"), "c-9", &m), Ok("tok_amex"));
        // A method id wins over a token when both are there.
        assert_eq!(
            token_for(Some("pm_a"), Some("tok_amex"), "c-1", &m),
            Ok("tok_visa")
        );
    }

    #[test]
    fn ids_are_unguessable_and_recognised() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(is_id(&a) && is_id(&b), "{a} {b}");
        for bad in [
            "",
            "pm_",
            "pm_xyz",
            "tok_visa",
            &format!("pm_{}", "g".repeat(32)),
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_are_short_visible_ascii() {
        assert_eq!(token_problem("tok_visa"), None);
        for bad in ["", "tok visa", "tök", &"t".repeat(101)] {
            assert!(token_problem(bad).is_some(), "{bad}");
        }
    }
}

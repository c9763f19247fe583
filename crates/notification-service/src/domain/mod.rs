//! The notification decisions, free of I/O: which e-mail an event asks for
//! and what it says ([`email`]), and whether it is still due ([`is_due`]).

pub mod email;

use email::Kind;

/// Whether an e-mail of `kind` is still due, given the kinds the order
/// already has: never twice, and no confirmation once the cancellation was
/// seen.
pub fn is_due(kind: Kind, existing: &[Kind]) -> bool {
    let superseded = kind == Kind::OrderConfirmation && existing.contains(&Kind::OrderCancelled);
    !superseded && !existing.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_once_and_no_confirmation_after_cancellation() {
        use Kind::*;
        assert!(is_due(OrderConfirmation, &[]));
        assert!(is_due(OrderCancelled, &[]));
        assert!(!is_due(OrderConfirmation, &[OrderConfirmation]));
        assert!(!is_due(OrderCancelled, &[OrderCancelled]));
        assert!(!is_due(OrderConfirmation, &[OrderCancelled]));
        assert!(is_due(OrderCancelled, &[OrderConfirmation]));
    }
}

//! What each consumed event means to the saga: the order it is about, its
//! [`Signal`] for the status machine, and the reason it gives when it
//! cancels the order. Pure: no I/O.

use orderflow_events::error::HandlerError;
use orderflow_events::Event;

use super::Signal;

/// The kind of the confirmation e-mail (`NotificationSent.kind`).
pub const ORDER_CONFIRMATION: &str = "ORDER_CONFIRMATION";

/// The order id an event is about, what it means for the status machine,
/// and the reason to give if it cancels the order.
pub fn classify(event: &Event) -> Result<(&str, Signal, String), HandlerError> {
    Ok(match event {
        Event::InventoryReserved(p) => (&p.order_id, Signal::Reserved, String::new()),
        Event::InventoryReservationFailed(p) => {
            let reason = if p.reason.trim().is_empty() {
                format!("out of stock: {}", p.skus.join(", "))
            } else {
                p.reason.clone()
            };
            (&p.order_id, Signal::ReservationFailed, reason)
        }
        Event::InventoryReleased(p) => (&p.order_id, Signal::Informational, String::new()),
        Event::PaymentProcessed(p) => (&p.order_id, Signal::Paid, String::new()),
        Event::PaymentFailed(p) => {
            let reason = if p.reason.trim().is_empty() {
                format!("payment declined: {}", p.decline_code)
            } else {
                p.reason.clone()
            };
            (&p.order_id, Signal::PaymentFailed, reason)
        }
        Event::PaymentRefunded(p) => (&p.order_id, Signal::Informational, String::new()),
        Event::ShippingCreated(p) => (&p.order_id, Signal::ShippingCreated, String::new()),
        Event::ShippingDispatched(p) => (&p.order_id, Signal::Dispatched, String::new()),
        Event::ShippingDelivered(p) => (&p.order_id, Signal::Delivered, String::new()),
        Event::ShippingCancelled(p) => (&p.order_id, Signal::ShippingCancelled, String::new()),
        Event::ShippingCancellationRejected(p) => {
            (&p.order_id, Signal::CancellationRejected, String::new())
        }
        Event::NotificationSent(p) => (&p.order_id, notification(&p.kind), String::new()),
        Event::NotificationFailed(p) => (&p.order_id, notification(&p.kind), String::new()),
        other => {
            return Err(HandlerError::permanent(format!(
                "the order service does not handle {}",
                other.event_type()
            )))
        }
    })
}

fn notification(kind: &str) -> Signal {
    if kind == ORDER_CONFIRMATION {
        Signal::Notified
    } else {
        Signal::Informational
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_events::events::{NotificationFailed, NotificationSent, PaymentFailed};

    #[test]
    fn confirmation_mails_count_and_cancellation_mails_do_not() {
        let sent = Event::from(NotificationSent {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "a@b.cd".into(),
            subject: "s".into(),
        });
        assert_eq!(classify(&sent).expect("ok").1, Signal::Notified);
        let failed = Event::from(NotificationFailed {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "a@b.cd".into(),
            reason: "550".into(),
        });
        assert_eq!(classify(&failed).expect("ok").1, Signal::Notified);
        let cancelled_mail = Event::from(NotificationSent {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: "ORDER_CANCELLED".into(),
            recipient: "a@b.cd".into(),
            subject: "s".into(),
        });
        assert_eq!(
            classify(&cancelled_mail).expect("ok").1,
            Signal::Informational
        );
    }

    #[test]
    fn payment_failure_reason_falls_back_to_the_decline_code() {
        let e = Event::from(PaymentFailed {
            order_id: "o".into(),
            payment_id: "p".into(),
            amount: 1,
            currency: "EUR".into(),
            reason: String::new(),
            decline_code: "card_declined".into(),
        });
        let (_, signal, reason) = classify(&e).expect("ok");
        assert_eq!(signal, Signal::PaymentFailed);
        assert_eq!(reason, "payment declined: card_declined");
    }
}

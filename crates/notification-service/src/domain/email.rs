//! What the e-mails say: subject, text body and `Message-ID` for each kind.
//! Pure functions, no I/O.

use std::fmt;
use std::fmt::Write as _;

use orderflow_events::events::{OrderCancelled, ShippingCreated};

/// The kinds of e-mail; one of each at most per order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent on `ShippingCreated`: the order is on its way.
    OrderConfirmation,
    /// Sent on `OrderCancelled`.
    OrderCancelled,
}

impl Kind {
    /// The value stored in `notifications.kind` and sent in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderConfirmation => "ORDER_CONFIRMATION",
            Kind::OrderCancelled => "ORDER_CANCELLED",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "ORDER_CONFIRMATION" => Some(Kind::OrderConfirmation),
            "ORDER_CANCELLED" => Some(Kind::OrderCancelled),
            _ => None,
        }
    }

    /// The kind's part of the `Message-ID`.
    fn message_id_tag(self) -> &'static str {
        match self {
            Kind::OrderConfirmation => "order-confirmation",
            Kind::OrderCancelled => "order-cancelled",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One e-mail, ready to be turned into an SMTP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Which e-mail.
    pub kind: Kind,
    /// The order it is about.
    pub order_id: String,
    /// Recipient address (not validated yet).
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// `Message-ID` header, angle brackets included.
    pub message_id: String,
}

/// The deterministic `Message-ID` of the `kind` e-mail of `order_id`:
/// `<order-confirmation.<orderId>@orderflow>`. A copy sent again after a
/// crash carries the same id, so mail systems can drop the duplicate.
/// Characters not allowed in an id are replaced by `_`.
pub fn message_id(kind: Kind, order_id: &str) -> String {
    let safe: String = order_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<{}.{safe}@orderflow>", kind.message_id_tag())
}

/// The confirmation e-mail for a created shipment.
pub fn confirmation(p: &ShippingCreated) -> Email {
    let greeting = if p.recipient_name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", p.recipient_name.trim())
    };
    let mut body = format!(
        "{greeting}\n\n\
         good news: your order {order} is on its way.\n\n\
         Carrier:         {carrier}\n\
         Tracking number: {tracking}\n\n\
         Items:\n",
        order = p.order_id,
        carrier = p.carrier,
        tracking = p.tracking_number,
    );
    for item in &p.items {
        let _ = writeln!(body, "  - {} x {}", item.quantity, item.sku);
    }
    body.push_str("\nThank you for shopping with orderflow.\n");
    Email {
        kind: Kind::OrderConfirmation,
        order_id: p.order_id.clone(),
        to: p.email.trim().to_owned(),
        subject: format!("Your order {} is on its way", p.order_id),
        body,
        message_id: message_id(Kind::OrderConfirmation, &p.order_id),
    }
}

/// The cancellation e-mail for a cancelled order.
pub fn cancellation(p: &OrderCancelled) -> Email {
    let reason = if p.reason.trim().is_empty() {
        p.reason_code.as_str()
    } else {
        p.reason.trim()
    };
    let body = format!(
        "Hello,\n\n\
         we are sorry: your order {order} was cancelled.\n\n\
         Reason: {reason}\n\n\
         Nothing will be shipped, and any payment taken for this order is refunded.\n\n\
         The orderflow team\n",
        order = p.order_id,
    );
    Email {
        kind: Kind::OrderCancelled,
        order_id: p.order_id.clone(),
        to: p.email.trim().to_owned(),
        subject: format!("Your order {} was cancelled", p.order_id),
        body,
        message_id: message_id(Kind::OrderCancelled, &p.order_id),
    }
}

#[cfg(test)]
mod tests {
    use orderflow_events::events::StockLine;

    use super::*;

    const ORDER: &str = "0b3c1c1e-5d8e-4b7a-9c1f-2a6f1d0e9b11";

    fn shipped() -> ShippingCreated {
        ShippingCreated {
            order_id: ORDER.into(),
            shipment_id: "s-1".into(),
            tracking_number: "OF123456789012".into(),
            carrier: "OrderFlow Post".into(),
            label_url: "/shipments/x/label".into(),
            email: " ann@example.com ".into(),
            recipient_name: "Ann".into(),
            items: vec![
                StockLine {
                    sku: "SKU-1".into(),
                    quantity: 2,
                },
                StockLine {
                    sku: "SKU-9".into(),
                    quantity: 1,
                },
            ],
        }
    }

    fn cancelled(reason: &str) -> OrderCancelled {
        OrderCancelled {
            order_id: ORDER.into(),
            reason: reason.into(),
            reason_code: "PAYMENT_DECLINED".into(),
            previous_status: "INVENTORY_RESERVED".into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
        }
    }

    #[test]
    fn confirmation_names_order_tracking_number_carrier_and_items() {
        let e = confirmation(&shipped());
        assert_eq!(e.kind, Kind::OrderConfirmation);
        assert_eq!(e.to, "ann@example.com");
        assert_eq!(e.subject, format!("Your order {ORDER} is on its way"));
        for needle in [
            "Hello Ann,",
            ORDER,
            "OF123456789012",
            "OrderFlow Post",
            "2 x SKU-1",
            "1 x SKU-9",
        ] {
            assert!(
                e.body.contains(needle),
                "body lacks {needle:?}:\n{}",
                e.body
            );
        }
        assert_eq!(
            e.message_id,
            format!("<order-confirmation.{ORDER}@orderflow>")
        );
    }

    #[test]
    fn cancellation_names_order_and_reason() {
        let e = cancellation(&cancelled("card declined"));
        assert_eq!(e.kind, Kind::OrderCancelled);
        assert_eq!(e.subject, format!("Your order {ORDER} was cancelled"));
        assert!(e.body.contains(ORDER), "{}", e.body);
        assert!(e.body.contains("Reason: card declined"), "{}", e.body);
        assert_eq!(e.message_id, format!("<order-cancelled.{ORDER}@orderflow>"));

        let e = cancellation(&cancelled(" "));
        assert!(e.body.contains("Reason: PAYMENT_DECLINED"), "{}", e.body);
    }

    #[test]
    fn message_ids_are_deterministic_and_safe() {
        assert_eq!(
            message_id(Kind::OrderConfirmation, "a b>c@d"),
            "<order-confirmation.a_b_c_d@orderflow>"
        );
        assert_eq!(
            message_id(Kind::OrderCancelled, ORDER),
            message_id(Kind::OrderCancelled, ORDER)
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in [Kind::OrderConfirmation, Kind::OrderCancelled] {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("other"), None);
    }
}

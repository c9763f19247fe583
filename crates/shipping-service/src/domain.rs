//! The shipment state machine, tracking numbers and labels: pure logic, no
//! I/O.

use std::fmt;

use orderflow_events::events::{Address, StockLine};
use rand::Rng;

/// Where a shipment (or a tombstone) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created on `PaymentProcessed`, waiting to leave the warehouse.
    Created,
    /// Handed to the carrier.
    Dispatched,
    /// Arrived at the recipient.
    Delivered,
    /// The order was cancelled before dispatch.
    Cancelled,
    /// Tombstone: the order was cancelled before any shipment existed.
    Voided,
}

impl Status {
    /// The value stored in `shipments.status` and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "CREATED",
            Status::Dispatched => "DISPATCHED",
            Status::Delivered => "DELIVERED",
            Status::Cancelled => "CANCELLED",
            Status::Voided => "VOIDED",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "CREATED" => Status::Created,
            "DISPATCHED" => Status::Dispatched,
            "DELIVERED" => Status::Delivered,
            "CANCELLED" => Status::Cancelled,
            "VOIDED" => Status::Voided,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transition requested over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `POST /shipments/{orderId}/dispatch`.
    Dispatch,
    /// `POST /shipments/{orderId}/deliver`.
    Deliver,
}

/// What a requested transition does to a shipment in a given status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Move to this status and emit the transition's event.
    Move(Status),
    /// The transition was made before: answer 200, emit nothing.
    AlreadyDone,
    /// Impossible from here: 409 with this code and message.
    Refuse(&'static str, &'static str),
    /// There is no shipment (only a tombstone): 404.
    NotFound,
}

/// Decides what `transition` does to a shipment in status `current`.
pub fn decide(current: Status, transition: Transition) -> Decision {
    use Status::*;
    match (transition, current) {
        (_, Voided) => Decision::NotFound,
        (Transition::Dispatch, Created) => Decision::Move(Dispatched),
        (Transition::Dispatch, Dispatched) => Decision::AlreadyDone,
        (Transition::Dispatch, Delivered) => Decision::Refuse(
            "invalid_transition",
            "the shipment was delivered already; it cannot be dispatched again",
        ),
        (Transition::Deliver, Dispatched) => Decision::Move(Delivered),
        (Transition::Deliver, Delivered) => Decision::AlreadyDone,
        (Transition::Deliver, Created) => {
            Decision::Refuse("not_dispatched", "the shipment has not been dispatched yet")
        }
        (_, Cancelled) => Decision::Refuse(
            "shipment_cancelled",
            "the shipment was cancelled together with its order",
        ),
    }
}

/// Whether an `OrderCancelled` cancels an existing shipment in `current`:
/// only one that has not left the warehouse.
pub fn cancels(current: Status) -> bool {
    current == Status::Created
}

/// The shipping service's answer to a cancellation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAnswer {
    /// Not dispatched: cancel the shipment, answer `ShippingCancelled`.
    Cancel,
    /// Cancelled before: answer `ShippingCancelled` again.
    AlreadyCancelled,
    /// The parcel left: answer `ShippingCancellationRejected`.
    Reject,
}

/// How a cancellation request is answered for a shipment in `current`. A
/// tombstone (`VOIDED`) is answered as cancelled.
pub fn answer_cancellation(current: Status) -> CancelAnswer {
    match current {
        Status::Created => CancelAnswer::Cancel,
        Status::Cancelled | Status::Voided => CancelAnswer::AlreadyCancelled,
        Status::Dispatched | Status::Delivered => CancelAnswer::Reject,
    }
}

/// Prefix of every tracking number.
pub const TRACKING_PREFIX: &str = "OF";
/// Random digits after the prefix.
pub const TRACKING_DIGITS: usize = 12;

/// A new random tracking number: `OF` followed by 12 digits.
pub fn tracking_number(rng: &mut impl Rng) -> String {
    let mut s = String::with_capacity(TRACKING_PREFIX.len() + TRACKING_DIGITS);
    s.push_str(TRACKING_PREFIX);
    for _ in 0..TRACKING_DIGITS {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s
}

/// The URL path of a shipment's label.
pub fn label_url(order_id: &str) -> String {
    format!("/shipments/{order_id}/label")
}

/// What a shipping label shows.
#[derive(Debug, Clone)]
pub struct Label<'a> {
    /// Carrier name.
    pub carrier: &'a str,
    /// Tracking number.
    pub tracking_number: &'a str,
    /// Order id.
    pub order_id: &'a str,
    /// Shipment id.
    pub shipment_id: &'a str,
    /// Shipment status.
    pub status: Status,
    /// Where it goes.
    pub recipient: &'a Address,
    /// What is in the parcel.
    pub items: &'a [StockLine],
}

/// Renders a plain-text shipping label.
pub fn render_label(label: &Label<'_>) -> String {
    let a = label.recipient;
    let mut out = String::new();
    let rule = "=".repeat(40);
    out.push_str(&format!("{rule}\n{}\n{rule}\n", label.carrier));
    out.push_str(&format!("Tracking number: {}\n", label.tracking_number));
    out.push_str(&format!("Order:           {}\n", label.order_id));
    out.push_str(&format!("Shipment:        {}\n", label.shipment_id));
    out.push_str(&format!("Status:          {}\n\n", label.status));
    out.push_str("Ship to:\n");
    out.push_str(&format!("  {}\n  {}\n", a.name, a.line1));
    if let Some(line2) = a.line2.as_deref().filter(|l| !l.trim().is_empty()) {
        out.push_str(&format!("  {line2}\n"));
    }
    out.push_str(&format!(
        "  {} {}\n  {}\n\n",
        a.postal_code, a.city, a.country
    ));
    out.push_str("Contents:\n");
    for item in label.items {
        out.push_str(&format!("  {} x {}\n", item.quantity, item.sku));
    }
    out.push_str(&format!("{rule}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn only_a_shipment_that_left_refuses_a_cancellation() {
        assert_eq!(answer_cancellation(Status::Created), CancelAnswer::Cancel);
        for s in [Status::Cancelled, Status::Voided] {
            assert_eq!(answer_cancellation(s), CancelAnswer::AlreadyCancelled);
        }
        for s in [Status::Dispatched, Status::Delivered] {
            assert_eq!(answer_cancellation(s), CancelAnswer::Reject);
        }
        // The same rows a dispatch refuses once cancelled.
        assert!(matches!(
            decide(Status::Cancelled, Transition::Dispatch),
            Decision::Refuse("shipment_cancelled", _)
        ));
    }

    #[test]
    fn dispatch_moves_created_and_is_idempotent() {
        assert_eq!(
            decide(Status::Created, Transition::Dispatch),
            Decision::Move(Status::Dispatched)
        );
        assert_eq!(
            decide(Status::Dispatched, Transition::Dispatch),
            Decision::AlreadyDone
        );
        assert!(matches!(
            decide(Status::Delivered, Transition::Dispatch),
            Decision::Refuse("invalid_transition", _)
        ));
        assert!(matches!(
            decide(Status::Cancelled, Transition::Dispatch),
            Decision::Refuse("shipment_cancelled", _)
        ));
        assert_eq!(
            decide(Status::Voided, Transition::Dispatch),
            Decision::NotFound
        );
    }

    #[test]
    fn deliver_needs_a_dispatched_shipment() {
        assert_eq!(
            decide(Status::Dispatched, Transition::Deliver),
            Decision::Move(Status::Delivered)
        );
        assert_eq!(
            decide(Status::Delivered, Transition::Deliver),
            Decision::AlreadyDone
        );
        assert!(matches!(
            decide(Status::Created, Transition::Deliver),
            Decision::Refuse("not_dispatched", _)
        ));
        assert!(matches!(
            decide(Status::Cancelled, Transition::Deliver),
            Decision::Refuse("shipment_cancelled", _)
        ));
        assert_eq!(
            decide(Status::Voided, Transition::Deliver),
            Decision::NotFound
        );
    }

    #[test]
    fn only_undispatched_shipments_are_cancelled() {
        assert!(cancels(Status::Created));
        for s in [
            Status::Dispatched,
            Status::Delivered,
            Status::Cancelled,
            Status::Voided,
        ] {
            assert!(!cancels(s), "{s}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            Status::Created,
            Status::Dispatched,
            Status::Delivered,
            Status::Cancelled,
            Status::Voided,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("created"), None);
    }

    #[test]
    fn tracking_numbers_are_of_plus_twelve_digits() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = tracking_number(&mut rng);
        let b = tracking_number(&mut rng);
        for t in [&a, &b] {
            assert_eq!(t.len(), 14, "{t}");
            assert!(t.starts_with("OF"), "{t}");
            assert!(t[2..].bytes().all(|c| c.is_ascii_digit()), "{t}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn label_names_carrier_tracking_number_address_and_items() {
        let address = Address {
            name: "Ann".into(),
            line1: "Main St 1".into(),
            line2: Some("Apt 4".into()),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        };
        let items = vec![StockLine {
            sku: "SKU-1".into(),
            quantity: 2,
        }];
        let text = render_label(&Label {
            carrier: "OrderFlow Post",
            tracking_number: "OF123456789012",
            order_id: "o-1",
            shipment_id: "s-1",
            status: Status::Created,
            recipient: &address,
            items: &items,
        });
        for needle in [
            "OrderFlow Post",
            "OF123456789012",
            "Ann",
            "Main St 1",
            "Apt 4",
            "10115 Berlin",
            "DE",
            "2 x SKU-1",
            "o-1",
        ] {
            assert!(text.contains(needle), "label lacks {needle:?}:\n{text}");
        }
        assert_eq!(label_url("o-1"), "/shipments/o-1/label");
    }
}

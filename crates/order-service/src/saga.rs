//! The order status machine, free of I/O: which status the facts learned so
//! far allow, which events that step emits, and when an order may be
//! cancelled.
//!
//! ```text
//! PENDING ─reserved→ INVENTORY_RESERVED ─paid→ PAID (OrderConfirmed)
//!   ─shipping created→ SHIPPING_CREATED ─notified→ SHIPPED (OrderShipped)
//!   ─delivered→ DELIVERED (OrderDelivered)
//! any status before SHIPPED ─reservation failed | payment failed |
//!   customer cancel | deadline→ CANCELLED (OrderCancelled)
//! ```
//!
//! Facts are recorded whatever order they arrive in; the status then moves
//! as far as they allow, so `PaymentProcessed` before `InventoryReserved`
//! ends in the same place as the other way round.

use std::fmt;

/// Status of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Accepted, waiting for the inventory reservation.
    Pending,
    /// Stock reserved, waiting for the payment.
    InventoryReserved,
    /// Paid, waiting for the shipment.
    Paid,
    /// Shipment created, waiting for the confirmation e-mail.
    ShippingCreated,
    /// Shipped: the automatic saga is over.
    Shipped,
    /// Delivered (final).
    Delivered,
    /// Cancelled (final).
    Cancelled,
}

impl Status {
    /// Every status, in saga order.
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::InventoryReserved,
        Status::Paid,
        Status::ShippingCreated,
        Status::Shipped,
        Status::Delivered,
        Status::Cancelled,
    ];

    /// Statuses whose saga is still running (the deadline applies).
    pub const OPEN: [Status; 4] = [
        Status::Pending,
        Status::InventoryReserved,
        Status::Paid,
        Status::ShippingCreated,
    ];

    /// The wire name, e.g. `INVENTORY_RESERVED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::InventoryReserved => "INVENTORY_RESERVED",
            Status::Paid => "PAID",
            Status::ShippingCreated => "SHIPPING_CREATED",
            Status::Shipped => "SHIPPED",
            Status::Delivered => "DELIVERED",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True before `SHIPPED` (and not cancelled): the saga is still running,
    /// so a failure or a passed deadline cancels the order.
    pub fn is_open(self) -> bool {
        Status::OPEN.contains(&self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`Status::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown order status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

impl TryFrom<String> for Status {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Status::parse(&s).ok_or(UnknownStatus(s))
    }
}

/// Why an order was cancelled (`reasonCode` of `OrderCancelled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonCode {
    /// The inventory could not reserve every line.
    OutOfStock,
    /// The payment was declined.
    PaymentDeclined,
    /// The customer cancelled.
    CustomerRequest,
    /// The saga made no progress before the deadline.
    SagaTimeout,
}

impl ReasonCode {
    /// The wire name, e.g. `OUT_OF_STOCK`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OutOfStock => "OUT_OF_STOCK",
            ReasonCode::PaymentDeclined => "PAYMENT_DECLINED",
            ReasonCode::CustomerRequest => "CUSTOMER_REQUEST",
            ReasonCode::SagaTimeout => "SAGA_TIMEOUT",
        }
    }
}

/// What the service knows about an order's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// `InventoryReserved` seen.
    pub reserved: bool,
    /// `PaymentProcessed` seen.
    pub paid: bool,
    /// `ShippingCreated` seen.
    pub shipping_created: bool,
    /// The confirmation e-mail was sent or finally failed.
    pub notified: bool,
    /// `ShippingDispatched` seen: the parcel left the warehouse.
    pub dispatched: bool,
    /// `ShippingDelivered` seen.
    pub delivered: bool,
}

/// What a consumed event means for the status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `InventoryReserved`.
    Reserved,
    /// `InventoryReservationFailed`.
    ReservationFailed,
    /// `PaymentProcessed`.
    Paid,
    /// `PaymentFailed`.
    PaymentFailed,
    /// `ShippingCreated`.
    ShippingCreated,
    /// `NotificationSent` / `NotificationFailed` of the confirmation e-mail.
    Notified,
    /// `ShippingDispatched`.
    Dispatched,
    /// `ShippingDelivered`.
    Delivered,
    /// Anything else (e.g. `InventoryReleased`, `PaymentRefunded`, the
    /// cancellation e-mail): timeline only.
    Informational,
}

/// An event the order service emits on a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// `OrderConfirmed` (reached `PAID`).
    Confirmed,
    /// `OrderShipped` (reached `SHIPPED`).
    Shipped,
    /// `OrderDelivered` (reached `DELIVERED`).
    Delivered,
    /// `OrderCancelled` with this reason code.
    Cancelled(ReasonCode),
}

/// The result of applying a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// New status.
    pub status: Status,
    /// New facts.
    pub facts: Facts,
    /// Events to emit, in order.
    pub emits: Vec<Emit>,
    /// True when the facts were recorded (false: timeline only).
    pub applied: bool,
}

/// Moves `status` forward as far as `facts` allow; returns the new status
/// and the events the steps emit. Cancelled and delivered orders stay put.
pub fn advance(mut status: Status, facts: &Facts) -> (Status, Vec<Emit>) {
    let mut emits = Vec::new();
    loop {
        let next = match status {
            Status::Pending if facts.reserved => Status::InventoryReserved,
            Status::InventoryReserved if facts.paid => {
                emits.push(Emit::Confirmed);
                Status::Paid
            }
            Status::Paid if facts.shipping_created => Status::ShippingCreated,
            Status::ShippingCreated if facts.notified => {
                emits.push(Emit::Shipped);
                Status::Shipped
            }
            Status::Shipped if facts.delivered => {
                emits.push(Emit::Delivered);
                Status::Delivered
            }
            _ => return (status, emits),
        };
        status = next;
    }
}

/// Applies what a consumed event says to an order in `status` with `facts`.
///
/// - A cancelled order records nothing (the event only goes to the
///   timeline).
/// - A failure (reservation or payment) cancels an order whose saga is still
///   open; after `SHIPPED` it is recorded nowhere but the timeline.
/// - Any other fact is recorded and the status advanced.
pub fn on_signal(status: Status, facts: Facts, signal: Signal) -> Transition {
    let unchanged = Transition {
        status,
        facts,
        emits: Vec::new(),
        applied: false,
    };
    if status == Status::Cancelled {
        return unchanged;
    }
    let mut next = facts;
    match signal {
        Signal::ReservationFailed | Signal::PaymentFailed => {
            if !status.is_open() {
                return unchanged;
            }
            let code = if signal == Signal::ReservationFailed {
                ReasonCode::OutOfStock
            } else {
                ReasonCode::PaymentDeclined
            };
            return Transition {
                status: Status::Cancelled,
                facts,
                emits: vec![Emit::Cancelled(code)],
                applied: true,
            };
        }
        Signal::Reserved => next.reserved = true,
        Signal::Paid => next.paid = true,
        Signal::ShippingCreated => next.shipping_created = true,
        Signal::Notified => next.notified = true,
        Signal::Dispatched => next.dispatched = true,
        Signal::Delivered => next.delivered = true,
        Signal::Informational => return unchanged,
    }
    let (status, emits) = advance(status, &next);
    Transition {
        status,
        facts: next,
        emits,
        applied: true,
    }
}

/// What a customer's cancellation request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// Cancel now and emit `OrderCancelled`.
    Cancel,
    /// Already cancelled: answer with the order, emit nothing.
    AlreadyCancelled,
    /// Too late: the parcel is on its way or delivered.
    NotCancellable,
}

/// Whether a customer may cancel an order in `status` with `facts`: only
/// before `SHIPPED` and while the shipment has not been dispatched.
pub fn customer_cancel(status: Status, facts: &Facts) -> CancelDecision {
    match status {
        Status::Cancelled => CancelDecision::AlreadyCancelled,
        s if s.is_open() && !facts.dispatched => CancelDecision::Cancel,
        _ => CancelDecision::NotCancellable,
    }
}

/// What the deadline sweeper does with an order whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineAction {
    /// Before payment: cancel, and the other services compensate.
    Cancel,
    /// Paid: never refund because a later step is slow; mark the saga
    /// stalled and keep waiting for that step (an e-mail server down must
    /// not change what happens to the goods or the money).
    Stall,
    /// Finished, or the parcel left: nothing.
    Nothing,
}

/// What the deadline sweeper does with an order in `status` with `facts`
/// whose deadline passed.
pub fn deadline_action(status: Status, facts: &Facts) -> DeadlineAction {
    if !status.is_open() || facts.dispatched {
        DeadlineAction::Nothing
    } else if facts.paid {
        DeadlineAction::Stall
    } else {
        DeadlineAction::Cancel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies signals one by one from a new order; returns the final status,
    /// facts and every emitted event.
    fn run(signals: &[Signal]) -> (Status, Facts, Vec<Emit>) {
        let mut status = Status::Pending;
        let mut facts = Facts::default();
        let mut all = Vec::new();
        for &s in signals {
            let t = on_signal(status, facts, s);
            status = t.status;
            facts = t.facts;
            all.extend(t.emits);
        }
        (status, facts, all)
    }

    #[test]
    fn happy_path_step_by_step() {
        use Signal::*;
        let mut status = Status::Pending;
        let mut facts = Facts::default();
        let expected = [
            (Reserved, Status::InventoryReserved, vec![]),
            (Paid, Status::Paid, vec![Emit::Confirmed]),
            (ShippingCreated, Status::ShippingCreated, vec![]),
            (Notified, Status::Shipped, vec![Emit::Shipped]),
            (Dispatched, Status::Shipped, vec![]),
            (Delivered, Status::Delivered, vec![Emit::Delivered]),
        ];
        for (signal, want, emits) in expected {
            let t = on_signal(status, facts, signal);
            assert_eq!(t.status, want, "after {signal:?}");
            assert_eq!(t.emits, emits, "after {signal:?}");
            assert!(t.applied);
            status = t.status;
            facts = t.facts;
        }
    }

    #[test]
    fn payment_before_reservation_ends_in_the_same_place() {
        use Signal::*;
        let t = on_signal(Status::Pending, Facts::default(), Paid);
        assert_eq!(t.status, Status::Pending);
        assert!(t.emits.is_empty());
        assert!(t.facts.paid);
        let t = on_signal(t.status, t.facts, Reserved);
        assert_eq!(t.status, Status::Paid);
        assert_eq!(t.emits, vec![Emit::Confirmed]);

        assert_eq!(run(&[Paid, Reserved]).0, run(&[Reserved, Paid]).0);
        assert_eq!(run(&[Paid, Reserved]).2, run(&[Reserved, Paid]).2);
    }

    #[test]
    fn every_arrival_order_of_the_facts_gives_the_same_outcome() {
        use Signal::*;
        let signals = [Reserved, Paid, ShippingCreated, Notified, Delivered];
        let reference = run(&signals);
        assert_eq!(reference.0, Status::Delivered);
        assert_eq!(
            reference.2,
            vec![Emit::Confirmed, Emit::Shipped, Emit::Delivered]
        );
        // All 120 permutations.
        fn permute(items: &mut Vec<Signal>, k: usize, out: &mut Vec<Vec<Signal>>) {
            if k == items.len() {
                out.push(items.clone());
                return;
            }
            for i in k..items.len() {
                items.swap(k, i);
                permute(items, k + 1, out);
                items.swap(k, i);
            }
        }
        let mut all = Vec::new();
        permute(&mut signals.to_vec(), 0, &mut all);
        assert_eq!(all.len(), 120);
        for order in all {
            let (status, _, emits) = run(&order);
            assert_eq!(status, Status::Delivered, "{order:?}");
            assert_eq!(emits, reference.2, "{order:?}");
        }
    }

    #[test]
    fn several_steps_at_once_emit_in_saga_order() {
        let facts = Facts {
            reserved: true,
            paid: true,
            shipping_created: true,
            notified: true,
            dispatched: true,
            delivered: true,
        };
        assert_eq!(
            advance(Status::Pending, &facts),
            (
                Status::Delivered,
                vec![Emit::Confirmed, Emit::Shipped, Emit::Delivered]
            )
        );
    }

    #[test]
    fn shipped_needs_the_notification_and_delivered_needs_shipped() {
        use Signal::*;
        let (status, facts, emits) = run(&[Reserved, Paid, ShippingCreated, Dispatched, Delivered]);
        assert_eq!(status, Status::ShippingCreated);
        assert!(facts.dispatched && facts.delivered);
        assert_eq!(emits, vec![Emit::Confirmed]);
        let t = on_signal(status, facts, Notified);
        assert_eq!(t.status, Status::Delivered);
        assert_eq!(t.emits, vec![Emit::Shipped, Emit::Delivered]);
    }

    #[test]
    fn failures_cancel_an_open_saga() {
        use Signal::*;
        let (status, _, emits) = run(&[ReservationFailed]);
        assert_eq!(status, Status::Cancelled);
        assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);

        let (status, _, emits) = run(&[Reserved, PaymentFailed]);
        assert_eq!(status, Status::Cancelled);
        assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::PaymentDeclined)]);

        // A payment failure that overtakes the reservation still cancels.
        let (status, _, emits) = run(&[PaymentFailed, Reserved]);
        assert_eq!(status, Status::Cancelled);
        assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::PaymentDeclined)]);
    }

    #[test]
    fn a_cancelled_order_records_nothing_more() {
        use Signal::*;
        for signal in [
            Reserved,
            ReservationFailed,
            Paid,
            PaymentFailed,
            ShippingCreated,
            Notified,
            Dispatched,
            Delivered,
            Informational,
        ] {
            let t = on_signal(Status::Cancelled, Facts::default(), signal);
            assert_eq!(t.status, Status::Cancelled);
            assert_eq!(t.facts, Facts::default());
            assert!(t.emits.is_empty());
            assert!(!t.applied);
        }
        // Cancelled once, never twice.
        let (status, _, emits) = run(&[ReservationFailed, PaymentFailed, Reserved, Paid]);
        assert_eq!(status, Status::Cancelled);
        assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);
    }

    #[test]
    fn failures_after_shipping_change_nothing() {
        for status in [Status::Shipped, Status::Delivered] {
            for signal in [Signal::ReservationFailed, Signal::PaymentFailed] {
                let t = on_signal(status, Facts::default(), signal);
                assert_eq!(t.status, status);
                assert!(t.emits.is_empty());
                assert!(!t.applied);
            }
        }
    }

    #[test]
    fn delivered_is_final() {
        let t = on_signal(Status::Delivered, Facts::default(), Signal::Reserved);
        assert_eq!(t.status, Status::Delivered);
        assert!(t.emits.is_empty());
        let t = on_signal(Status::Delivered, Facts::default(), Signal::Informational);
        assert_eq!(t.status, Status::Delivered);
        assert!(!t.applied);
    }

    #[test]
    fn customer_cancellation_rules() {
        let none = Facts::default();
        let dispatched = Facts {
            dispatched: true,
            ..Facts::default()
        };
        for s in Status::OPEN {
            assert_eq!(customer_cancel(s, &none), CancelDecision::Cancel, "{s}");
        }
        assert_eq!(
            customer_cancel(Status::ShippingCreated, &dispatched),
            CancelDecision::NotCancellable
        );
        assert_eq!(
            customer_cancel(Status::Cancelled, &none),
            CancelDecision::AlreadyCancelled
        );
        assert_eq!(
            customer_cancel(Status::Shipped, &none),
            CancelDecision::NotCancellable
        );
        assert_eq!(
            customer_cancel(Status::Delivered, &none),
            CancelDecision::NotCancellable
        );
    }

    #[test]
    fn deadline_rules() {
        for s in [Status::Pending, Status::InventoryReserved] {
            assert_eq!(
                deadline_action(s, &Facts::default()),
                DeadlineAction::Cancel,
                "{s}"
            );
        }
        let paid = Facts {
            reserved: true,
            paid: true,
            ..Facts::default()
        };
        for s in [Status::Paid, Status::ShippingCreated] {
            assert_eq!(deadline_action(s, &paid), DeadlineAction::Stall, "{s}");
        }
        for s in [Status::Shipped, Status::Delivered, Status::Cancelled] {
            assert_eq!(deadline_action(s, &paid), DeadlineAction::Nothing, "{s}");
        }
        let dispatched = Facts {
            dispatched: true,
            ..paid
        };
        assert_eq!(
            deadline_action(Status::ShippingCreated, &dispatched),
            DeadlineAction::Nothing
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::try_from(s.as_str().to_owned()), Ok(s));
        }
        assert_eq!(Status::parse("pending"), None);
        assert!(Status::try_from("NOPE".to_owned()).is_err());
    }
}

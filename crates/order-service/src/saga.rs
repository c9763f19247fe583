//! The order status machine, free of I/O: which status the facts learned so
//! far allow, which events that step emits, and when an order may be
//! cancelled.
//!
//! ```text
//! PENDING ─reserved→ INVENTORY_RESERVED ─paid→ PAID (OrderConfirmed)
//!   ─shipping created→ SHIPPING_CREATED ─notified→ SHIPPED (OrderShipped)
//!   ─delivered→ DELIVERED (OrderDelivered)
//! any status before SHIPPED ─reservation failed | payment failed→
//!   CANCELLED (OrderCancelled)
//! any status before SHIPPED, not dispatched ─customer cancel | deadline
//!   before payment→ CANCELLING (OrderCancellationRequested)
//! CANCELLING ─ShippingCancelled→ CANCELLED (OrderCancelled)
//! CANCELLING ─ShippingCancellationRejected→ the status the facts allow
//! ```
//!
//! The shipment's dispatch is the saga's pivot, and the shipping service is
//! its one authority: a cancellation that could race a dispatch (a
//! customer's, or the deadline's) is only a request until shipping answers.
//! Shipping decides under the shipment's row lock, so either the dispatch
//! or the cancellation wins, never both; the other services compensate only
//! on the final `OrderCancelled`.
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
    /// Cancellation requested; waiting for the shipping service to confirm
    /// that no goods leave (or to refuse because they have).
    Cancelling,
    /// Cancelled (final).
    Cancelled,
}

impl Status {
    /// Every status, in saga order.
    pub const ALL: [Status; 8] = [
        Status::Pending,
        Status::InventoryReserved,
        Status::Paid,
        Status::ShippingCreated,
        Status::Shipped,
        Status::Delivered,
        Status::Cancelling,
        Status::Cancelled,
    ];

    /// Statuses whose saga is still running (the deadline applies).
    pub const OPEN: [Status; 5] = [
        Status::Pending,
        Status::InventoryReserved,
        Status::Paid,
        Status::ShippingCreated,
        Status::Cancelling,
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
            Status::Cancelling => "CANCELLING",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True before `SHIPPED` (and not cancelled): the saga is still running,
    /// so a failure cancels the order and the deadline applies.
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

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ReasonCode> {
        [
            ReasonCode::OutOfStock,
            ReasonCode::PaymentDeclined,
            ReasonCode::CustomerRequest,
            ReasonCode::SagaTimeout,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// A cancellation waiting for the shipping service's answer: what the
/// order was before it, and why it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCancel {
    /// The status the order had when the cancellation was requested.
    pub from: Status,
    /// Why.
    pub code: ReasonCode,
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
    /// `ShippingCancelled`: no goods will leave.
    ShippingCancelled,
    /// `ShippingCancellationRejected`: the goods left first.
    CancellationRejected,
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
    /// `OrderCancellationRequested` with this reason code (to `CANCELLING`).
    CancelRequested(ReasonCode),
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

/// Applies what a consumed event says to an order in `status` with `facts`
/// (and `pending`, the request of a `CANCELLING` order).
///
/// - A cancelled order records nothing (the event only goes to the
///   timeline).
/// - A failure (reservation or payment) cancels an order whose saga is still
///   open; after `SHIPPED` it is recorded nowhere but the timeline.
/// - A `CANCELLING` order records facts but does not advance; shipping's
///   answer ends it: `ShippingCancelled` cancels it, a rejection resumes it
///   from where it was, as far as the facts now allow.
/// - Any other fact is recorded and the status advanced.
pub fn on_signal(
    status: Status,
    facts: Facts,
    pending: Option<PendingCancel>,
    signal: Signal,
) -> Transition {
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
        Signal::ShippingCancelled | Signal::CancellationRejected => {
            let (Status::Cancelling, Some(pending)) = (status, pending) else {
                // An answer to a request that is no longer pending (the
                // order was cancelled by a failure meanwhile).
                return unchanged;
            };
            if signal == Signal::ShippingCancelled {
                return Transition {
                    status: Status::Cancelled,
                    facts,
                    emits: vec![Emit::Cancelled(pending.code)],
                    applied: true,
                };
            }
            let (status, emits) = advance(pending.from, &facts);
            return Transition {
                status,
                facts,
                emits,
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
    /// Ask shipping to stop the shipment: to `CANCELLING`, emit
    /// `OrderCancellationRequested`.
    Request,
    /// Requested before and not yet answered: answer with the order, emit
    /// nothing.
    AlreadyRequested,
    /// Already cancelled: answer with the order, emit nothing.
    AlreadyCancelled,
    /// Too late: the parcel left the warehouse.
    AlreadyDispatched,
    /// Too late: the saga is over (`SHIPPED`, `DELIVERED`).
    NotCancellable,
}

/// Whether a customer may cancel an order in `status` with `facts`: only
/// before `SHIPPED` and while the shipment is not known to be dispatched.
/// Even then it is a request the shipping service may still refuse.
pub fn customer_cancel(status: Status, facts: &Facts) -> CancelDecision {
    match status {
        Status::Cancelled => CancelDecision::AlreadyCancelled,
        Status::Cancelling => CancelDecision::AlreadyRequested,
        _ if facts.dispatched => CancelDecision::AlreadyDispatched,
        s if s.is_open() => CancelDecision::Request,
        _ => CancelDecision::NotCancellable,
    }
}

/// What the deadline sweeper does with an order whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineAction {
    /// Before payment: request the cancellation (the other services
    /// compensate once shipping confirms it).
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
/// A `CANCELLING` order past its deadline is waiting for the shipping
/// service: it stalls, it is not asked again.
pub fn deadline_action(status: Status, facts: &Facts) -> DeadlineAction {
    if !status.is_open() || facts.dispatched {
        DeadlineAction::Nothing
    } else if facts.paid || status == Status::Cancelling {
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
            let t = on_signal(status, facts, None, s);
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
            let t = on_signal(status, facts, None, signal);
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
        let t = on_signal(Status::Pending, Facts::default(), None, Paid);
        assert_eq!(t.status, Status::Pending);
        assert!(t.emits.is_empty());
        assert!(t.facts.paid);
        let t = on_signal(t.status, t.facts, None, Reserved);
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
        let t = on_signal(status, facts, None, Notified);
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
            let t = on_signal(Status::Cancelled, Facts::default(), None, signal);
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
                let t = on_signal(status, Facts::default(), None, signal);
                assert_eq!(t.status, status);
                assert!(t.emits.is_empty());
                assert!(!t.applied);
            }
        }
    }

    #[test]
    fn delivered_is_final() {
        let t = on_signal(Status::Delivered, Facts::default(), None, Signal::Reserved);
        assert_eq!(t.status, Status::Delivered);
        assert!(t.emits.is_empty());
        let t = on_signal(
            Status::Delivered,
            Facts::default(),
            None,
            Signal::Informational,
        );
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
            if s != Status::Cancelling {
                assert_eq!(customer_cancel(s, &none), CancelDecision::Request, "{s}");
            }
        }
        assert_eq!(
            customer_cancel(Status::Cancelling, &none),
            CancelDecision::AlreadyRequested
        );
        for s in [Status::ShippingCreated, Status::Shipped, Status::Delivered] {
            assert_eq!(
                customer_cancel(s, &dispatched),
                CancelDecision::AlreadyDispatched,
                "{s}"
            );
        }
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
        // A request waiting for shipping's answer is not asked again.
        assert_eq!(
            deadline_action(Status::Cancelling, &Facts::default()),
            DeadlineAction::Stall
        );
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

    fn pending(from: Status, code: ReasonCode) -> Option<PendingCancel> {
        Some(PendingCancel { from, code })
    }

    #[test]
    fn a_confirmed_cancellation_cancels_with_the_requested_reason() {
        let facts = Facts {
            reserved: true,
            paid: true,
            shipping_created: true,
            ..Facts::default()
        };
        let t = on_signal(
            Status::Cancelling,
            facts,
            pending(Status::ShippingCreated, ReasonCode::CustomerRequest),
            Signal::ShippingCancelled,
        );
        assert_eq!(t.status, Status::Cancelled);
        assert_eq!(t.emits, vec![Emit::Cancelled(ReasonCode::CustomerRequest)]);
        assert!(t.applied);
    }

    #[test]
    fn a_rejected_cancellation_resumes_as_far_as_the_facts_allow() {
        // Requested while PAID; meanwhile the shipment was created, the
        // confirmation e-mail sent and the parcel dispatched.
        let facts = Facts {
            reserved: true,
            paid: true,
            shipping_created: true,
            notified: true,
            dispatched: true,
            delivered: false,
        };
        let t = on_signal(
            Status::Cancelling,
            facts,
            pending(Status::Paid, ReasonCode::CustomerRequest),
            Signal::CancellationRejected,
        );
        assert_eq!(t.status, Status::Shipped);
        // OrderConfirmed was emitted before the request: not again.
        assert_eq!(t.emits, vec![Emit::Shipped]);
    }

    #[test]
    fn a_cancelling_order_records_facts_without_advancing() {
        use Signal::*;
        let p = pending(Status::InventoryReserved, ReasonCode::SagaTimeout);
        let mut status = Status::Cancelling;
        let mut facts = Facts {
            reserved: true,
            ..Facts::default()
        };
        for signal in [Paid, ShippingCreated, Notified, Dispatched] {
            let t = on_signal(status, facts, p, signal);
            assert_eq!(t.status, Status::Cancelling, "{signal:?}");
            assert!(t.emits.is_empty(), "{signal:?}");
            assert!(t.applied);
            (status, facts) = (t.status, t.facts);
        }
        assert!(facts.paid && facts.shipping_created && facts.notified && facts.dispatched);
        let t = on_signal(status, facts, p, CancellationRejected);
        assert_eq!(t.status, Status::Shipped);
        assert_eq!(t.emits, vec![Emit::Confirmed, Emit::Shipped]);
    }

    #[test]
    fn a_failure_while_cancelling_cancels_at_once() {
        let p = pending(Status::Pending, ReasonCode::CustomerRequest);
        let t = on_signal(
            Status::Cancelling,
            Facts::default(),
            p,
            Signal::ReservationFailed,
        );
        assert_eq!(t.status, Status::Cancelled);
        assert_eq!(t.emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);
        // Shipping's later answer only goes to the timeline.
        for signal in [Signal::ShippingCancelled, Signal::CancellationRejected] {
            let late = on_signal(t.status, t.facts, None, signal);
            assert_eq!(late.status, Status::Cancelled);
            assert!(!late.applied && late.emits.is_empty());
        }
    }

    #[test]
    fn an_answer_without_a_request_changes_nothing() {
        for signal in [Signal::ShippingCancelled, Signal::CancellationRejected] {
            let t = on_signal(Status::ShippingCreated, Facts::default(), None, signal);
            assert_eq!(t.status, Status::ShippingCreated);
            assert!(!t.applied && t.emits.is_empty());
        }
    }

    #[test]
    fn reason_codes_round_trip() {
        for code in [
            ReasonCode::OutOfStock,
            ReasonCode::PaymentDeclined,
            ReasonCode::CustomerRequest,
            ReasonCode::SagaTimeout,
        ] {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ReasonCode::parse("NOPE"), None);
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

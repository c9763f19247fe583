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

mod signals;

pub use signals::{classify, ORDER_CONFIRMATION};

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
mod tests;

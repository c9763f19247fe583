//! Saga transitions of orders: what a transition writes (status, facts,
//! timeline, emitted events) and the one statement that writes it.

use super::*;

/// Changes to orders written in one statement by [`Change::write`]:
/// timeline rows, the mutable part of saved orders (status, reason, facts,
/// timestamps) and events queued in the outbox.
#[derive(Debug)]
pub struct Change<'a> {
    topics: &'a TopicCatalog,
    timeline: TimelineRows,
    saved: SavedOrders,
    events: outbox::Rows,
}

/// The mutable columns of orders to write, one array per column.
#[derive(Debug, Default)]
struct SavedOrders {
    ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    reasons: Vec<Option<String>>,
    reason_codes: Vec<Option<String>>,
    reserved: Vec<bool>,
    paid: Vec<bool>,
    payment_ids: Vec<Option<String>>,
    shipping_created: Vec<bool>,
    tracking_numbers: Vec<Option<String>>,
    notified: Vec<bool>,
    dispatched: Vec<bool>,
    delivered: Vec<bool>,
    updated_at: Vec<DateTime<Utc>>,
    deadline_at: Vec<DateTime<Utc>>,
    cancel_from: Vec<Option<String>>,
}

impl<'a> Change<'a> {
    /// Nothing yet; events go to the topics of `topics`.
    pub fn new(topics: &'a TopicCatalog) -> Self {
        Self {
            topics,
            timeline: TimelineRows::default(),
            saved: SavedOrders::default(),
            events: outbox::Rows::default(),
        }
    }

    /// Adds an event to the timeline of `order_id` (nothing when it is there
    /// already).
    pub fn record(&mut self, order_id: Uuid, envelope: &Envelope) {
        self.timeline.push(order_id, envelope);
    }

    /// Applies `t` to `order` in memory and adds what it writes: the causing
    /// event (for [`Cause::Event`]) and `t.emits` to the timeline, the
    /// emitted events to the outbox. `reason` is the human-readable reason
    /// of a cancellation; `last_event` the last event of the order's
    /// timeline, which a [`Cause::Local`] transition's first event names as
    /// its cause. Returns whether the order row changed: then it must be
    /// [`save`](Self::save)d, once, in its final state.
    pub fn transition(
        &mut self,
        order: &mut OrderRow,
        t: &Transition,
        reason: &str,
        cause: &Cause<'_>,
        last_event: Option<Uuid>,
        clock: &Clock,
    ) -> Result<bool, StoreError> {
        let previous_status = order.status;
        let before = (order.status, order.facts());
        order.set_facts(&t.facts);
        order.status = t.status;
        if t.status != previous_status {
            order.deadline_at = clock.now + clock.timeout;
        }
        if t.status == Status::Cancelling && previous_status != Status::Cancelling {
            order.cancel_from = Some(previous_status.as_str().to_owned());
        } else if previous_status == Status::Cancelling
            && !matches!(t.status, Status::Cancelling | Status::Cancelled)
        {
            // Shipping refused: the order goes on, with nothing of the
            // request left but its timeline.
            order.cancel_from = None;
            order.reason = None;
            order.reason_code = None;
        }
        for emit in &t.emits {
            if let Emit::Cancelled(code) | Emit::CancelRequested(code) = emit {
                // A confirmed request keeps the reason it was asked with.
                if !reason.is_empty() || order.reason.is_none() {
                    order.reason = Some(reason.to_owned());
                }
                order.reason_code = Some(code.as_str().to_owned());
            }
        }
        let save = before != (order.status, order.facts()) || !t.emits.is_empty();
        if save {
            order.updated_at = clock.now;
        }
        if let Cause::Event { envelope, .. } = cause {
            self.timeline.push(order.id, envelope);
        }
        let mut last_local_cause = last_event;
        let key = order.id.to_string();
        for &step in &t.emits {
            let payload = payload(order, step, previous_status);
            let (envelope, trace) = match cause {
                Cause::Event { envelope, trace } => (
                    Envelope::caused_by(envelope, SOURCE, payload),
                    trace.map(TraceContext::child),
                ),
                Cause::Local { trace } => {
                    let mut e = Envelope::new(SOURCE, key.clone(), payload);
                    e.causation_id = last_local_cause;
                    e.metadata = order.metadata.0.clone();
                    last_local_cause = Some(e.event_id);
                    (e, Some(trace.child()))
                }
            };
            self.timeline.push(order.id, &envelope);
            self.events
                .push(self.topics, &key, &envelope, trace.as_ref())?;
        }
        crate::domain::metrics::transition(&t.emits, order.created_at, clock.now);
        Ok(save)
    }

    /// Writes the mutable part of `order` as it is now. Save an order at
    /// most once per change.
    pub fn save(&mut self, order: &OrderRow) {
        let s = &mut self.saved;
        s.ids.push(order.id);
        s.statuses.push(order.status.as_str());
        s.reasons.push(order.reason.clone());
        s.reason_codes.push(order.reason_code.clone());
        s.reserved.push(order.reserved);
        s.paid.push(order.paid);
        s.payment_ids.push(order.payment_id.clone());
        s.shipping_created.push(order.shipping_created);
        s.tracking_numbers.push(order.tracking_number.clone());
        s.notified.push(order.notified);
        s.dispatched.push(order.dispatched);
        s.delivered.push(order.delivered);
        s.updated_at.push(order.updated_at);
        s.deadline_at.push(order.deadline_at);
        s.cancel_from.push(order.cancel_from.clone());
    }

    /// Writes everything added, in one statement (none when nothing was).
    /// The saved orders must be locked by the caller's transaction. Planned
    /// on every call ([`UNNAMED`]).
    pub async fn write(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.timeline.event_ids.is_empty() && self.saved.ids.is_empty() {
            return Ok(());
        }
        let (t, s) = (&self.timeline, &self.saved);
        orderflow_events::query_queueing!(
            with: "timeline AS (INSERT INTO order_timeline (event_id, order_id, event_type, source, \
                   correlation_id, causation_id, occurred_at) \
                   SELECT * FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], \
                   $12::uuid[], $13::timestamptz[]) ON CONFLICT (event_id) DO NOTHING), \
                 saved AS (UPDATE orders o SET status = u.status, reason = u.reason, \
                   reason_code = u.reason_code, reserved = u.reserved, paid = u.paid, \
                   payment_id = u.payment_id, shipping_created = u.shipping_created, \
                   tracking_number = u.tracking_number, notified = u.notified, \
                   dispatched = u.dispatched, delivered = u.delivered, \
                   updated_at = u.updated_at, deadline_at = u.deadline_at, stalled_at = NULL, \
                   cancel_from = u.cancel_from \
                   FROM unnest($14::uuid[], $15::text[], $16::text[], $17::text[], $18::bool[], \
                     $19::bool[], $20::text[], $21::bool[], $22::text[], $23::bool[], \
                     $24::bool[], $25::bool[], $26::timestamptz[], $27::timestamptz[], \
                     $28::text[]) \
                   AS u (id, status, reason, reason_code, reserved, paid, payment_id, \
                     shipping_created, tracking_number, notified, dispatched, delivered, \
                     updated_at, deadline_at, cancel_from) \
                   WHERE o.id = u.id)",
            when: "true",
            // No columns: a statement without a result can be planned on
            // every call (`persistent(UNNAMED)`).
            then: "SELECT",
            rows: &self.events,
            &t.event_ids,
            &t.order_ids,
            &t.event_types as &[&str],
            &t.sources,
            &t.correlation_ids,
            &t.causation_ids as &[Option<Uuid>],
            &t.occurred_at,
            &s.ids,
            &s.statuses as &[&str],
            &s.reasons as &[Option<String>],
            &s.reason_codes as &[Option<String>],
            &s.reserved,
            &s.paid,
            &s.payment_ids as &[Option<String>],
            &s.shipping_created,
            &s.tracking_numbers as &[Option<String>],
            &s.notified,
            &s.dispatched,
            &s.delivered,
            &s.updated_at,
            &s.deadline_at,
            &s.cancel_from as &[Option<String>],
        )
        .persistent(UNNAMED)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// What caused a transition.
pub enum Cause<'a> {
    /// A consumed event: emitted events are `caused_by` it and continue its
    /// trace.
    Event {
        /// Its envelope.
        envelope: &'a Envelope,
        /// Its trace context.
        trace: Option<&'a TraceContext>,
    },
    /// An HTTP call or the deadline sweeper: emitted events name the last
    /// event of the order's timeline as cause, carry the order's metadata
    /// and the given trace.
    Local {
        /// Trace context to send with the events.
        trace: TraceContext,
    },
}

/// Settings a transition needs.
pub struct Clock {
    /// Now.
    pub now: DateTime<Utc>,
    /// The saga timeout (the deadline moves to `now + timeout`).
    pub timeout: TimeDelta,
}

/// Applies `t` to `order` (already locked in `conn`'s transaction), in one
/// statement: writes the row when anything changed, adds the causing event
/// (for [`Cause::Event`]) and `t.emits` to the timeline, and queues the
/// emitted events in the outbox. `reason` is the human-readable reason of a
/// cancellation. Returns the ids of the emitted events.
pub async fn apply_transition(
    conn: &mut PgConnection,
    topics: &TopicCatalog,
    order: &mut OrderRow,
    t: &Transition,
    reason: &str,
    cause: &Cause<'_>,
    clock: &Clock,
) -> Result<Vec<Uuid>, StoreError> {
    let last_event = match cause {
        Cause::Local { .. } if !t.emits.is_empty() => last_event_id(conn, order.id).await?,
        _ => None,
    };
    let mut change = Change::new(topics);
    if change.transition(order, t, reason, cause, last_event, clock)? {
        change.save(order);
    }
    let emitted = change.events.event_ids().to_vec();
    change.write(conn).await?;
    Ok(emitted)
}

/// The payload of an event emitted by a transition.
fn payload(order: &OrderRow, emit: Emit, previous_status: Status) -> Event {
    let order_id = order.id.to_string();
    match emit {
        Emit::Confirmed => OrderConfirmed {
            order_id,
            payment_id: order.payment_id.clone().unwrap_or_default(),
            total: order.total,
            currency: order.currency.clone(),
        }
        .into(),
        Emit::Shipped => OrderShipped {
            order_id,
            tracking_number: order.tracking_number.clone().unwrap_or_default(),
        }
        .into(),
        Emit::Delivered => OrderDelivered {
            order_id,
            tracking_number: order.tracking_number.clone().unwrap_or_default(),
        }
        .into(),
        Emit::CancelRequested(code) => OrderCancellationRequested {
            order_id,
            reason: order.reason.clone().unwrap_or_default(),
            reason_code: code.as_str().to_owned(),
        }
        .into(),
        Emit::Cancelled(code) => OrderCancelled {
            order_id,
            reason: order.reason.clone().unwrap_or_default(),
            reason_code: code.as_str().to_owned(),
            // The status the cancellation was asked in, not CANCELLING.
            previous_status: match (previous_status, &order.cancel_from) {
                (Status::Cancelling, Some(from)) => from.clone(),
                _ => previous_status.as_str().to_owned(),
            },
            customer_id: order.customer_id.clone(),
            email: order.email.clone(),
        }
        .into(),
    }
}

/// A cancellation request with `code` from the order's current state: to
/// `CANCELLING`, asking the shipping service to stop the shipment.
pub fn cancel_request(order: &OrderRow, code: ReasonCode) -> Transition {
    Transition {
        status: Status::Cancelling,
        facts: order.facts(),
        emits: vec![Emit::CancelRequested(code)],
        applied: true,
    }
}

//! Writing a new order with its first event: the row, its timeline entry
//! and its outbox row in one statement.

use super::*;

impl OrderRow {
    /// Order `id` as accepted at `now`: `PENDING`, no facts yet, its saga
    /// deadline at `deadline_at`.
    pub fn pending(
        id: Uuid,
        now: DateTime<Utc>,
        deadline_at: DateTime<Utc>,
        order: crate::domain::acceptance::ValidatedOrder,
        metadata: BTreeMap<String, String>,
        idempotency_key: Option<String>,
        request_hash: String,
    ) -> Self {
        Self {
            id,
            status: Status::Pending,
            reason: None,
            reason_code: None,
            customer_id: order.customer_id,
            email: order.email,
            currency: order.currency,
            items: Json(order.items),
            total: order.total,
            shipping_address: Json(order.shipping_address),
            payment_token: None,
            payment_method_id: Some(order.payment_method_id),
            reserved: false,
            paid: false,
            payment_id: None,
            shipping_created: false,
            tracking_number: None,
            notified: false,
            dispatched: false,
            delivered: false,
            metadata: Json(metadata),
            idempotency_key,
            request_hash: Some(request_hash),
            created_at: now,
            updated_at: now,
            deadline_at,
            stalled_at: None,
            cancel_from: None,
        }
    }
}

/// A new order with its first event, ready to be written by
/// [`NewOrder::insert`] (possibly on another task: the event's trace
/// context is taken when it is built).
#[derive(Debug)]
pub struct NewOrder {
    order: OrderRow,
    timeline: TimelineRows,
    events: outbox::Rows,
}

impl NewOrder {
    /// `order` with its first event `created`, as [`create_order`] writes it.
    pub fn new(
        topics: &TopicCatalog,
        order: OrderRow,
        created: &Envelope,
        trace: Option<&TraceContext>,
    ) -> Result<Self, StoreError> {
        let mut timeline = TimelineRows::default();
        timeline.push(order.id, created);
        let mut events = outbox::Rows::default();
        events.push(topics, &order.id.to_string(), created, trace)?;
        Ok(Self {
            order,
            timeline,
            events,
        })
    }

    /// The order.
    pub fn order(&self) -> &OrderRow {
        &self.order
    }

    /// Writes the order, its timeline row and its event in one statement;
    /// `false` when another order already holds its idempotency key
    /// (nothing is written then).
    pub async fn insert(&self, conn: &mut PgConnection) -> Result<bool, StoreError> {
        let o = &self.order;
        let t = &self.timeline;
        let created = orderflow_events::query_queueing!(
            with: "created AS (INSERT INTO orders (id, status, reason, reason_code, customer_id, \
                   email, currency, items, total, shipping_address, payment_token, payment_method_id, \
                   metadata, idempotency_key, request_hash, created_at, updated_at, deadline_at) \
                   VALUES ($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, \
                   $29, $30, $31) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
                 timeline AS (INSERT INTO order_timeline (event_id, order_id, event_type, source, \
                   correlation_id, causation_id, occurred_at) \
                   SELECT * FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], \
                   $12::uuid[], $13::timestamptz[]) \
                   WHERE EXISTS (SELECT 1 FROM created) ON CONFLICT (event_id) DO NOTHING)",
            // The timeline row and the event need the order: they only go
            // in with it.
            when: "EXISTS (SELECT 1 FROM created)",
            then: "SELECT count(*) AS \"created!\" FROM created",
            rows: &self.events,
            &t.event_ids,
            &t.order_ids,
            &t.event_types as &[&str],
            &t.sources,
            &t.correlation_ids,
            &t.causation_ids as &[Option<Uuid>],
            &t.occurred_at,
            o.id,
            o.status.as_str(),
            o.reason.as_deref(),
            o.reason_code.as_deref(),
            &o.customer_id,
            &o.email,
            &o.currency,
            &o.items as _,
            o.total,
            &o.shipping_address as _,
            o.payment_token.as_deref(),
            o.payment_method_id.as_deref(),
            &o.metadata as _,
            o.idempotency_key.as_deref(),
            o.request_hash.as_deref(),
            o.created_at,
            o.updated_at,
            o.deadline_at,
        )
        .fetch_one(conn)
        .await?
        .created;
        Ok(created == 1)
    }
}

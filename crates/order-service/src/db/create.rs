//! Writing a new order with its first event: the row, its timeline entry
//! and its outbox row in one statement, which also checks that the order's
//! lines carry the catalogue's current prices.

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
    /// Each SKU of the order once, and the unit price its lines carry.
    skus: Vec<String>,
    prices: Vec<i64>,
}

/// What [`NewOrder::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// The order and its event are written.
    Created,
    /// Nothing is written: another order holds the idempotency key.
    KeyTaken,
    /// Nothing is written: a line's price is not the catalogue's (any
    /// more), or its SKU is not in the catalogue. The idempotency key may
    /// be taken too.
    Stale,
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
        let mut skus: Vec<String> = Vec::with_capacity(order.items.0.len());
        let mut prices = Vec::with_capacity(order.items.0.len());
        for line in &order.items.0 {
            match skus.iter().position(|s| *s == line.sku) {
                // A SKU on two lines at two prices cannot both be the
                // catalogue's: keep both, so the check fails.
                Some(i) if prices[i] == line.unit_price => {}
                _ => {
                    skus.push(line.sku.clone());
                    prices.push(line.unit_price);
                }
            }
        }
        Ok(Self {
            order,
            timeline,
            events,
            skus,
            prices,
        })
    }

    /// The order.
    pub fn order(&self) -> &OrderRow {
        &self.order
    }

    /// Writes the order, its timeline row and its event in one statement,
    /// if every SKU of the order is in the catalogue at the unit price and
    /// in the currency its lines carry, and no other order holds its
    /// idempotency key; otherwise nothing is written. The prices are
    /// checked in the statement's snapshot, so an order is never written at
    /// a price the catalogue had already replaced, however the caller
    /// learnt the prices.
    pub async fn insert(&self, conn: &mut PgConnection) -> Result<Inserted, StoreError> {
        let o = &self.order;
        let t = &self.timeline;
        let row = orderflow_events::query_queueing!(
            with: "fresh AS (SELECT count(*) = cardinality($32::text[]) AS ok FROM catalog c \
                   JOIN unnest($32::text[], $33::int8[]) AS p (sku, price) \
                   ON c.sku = p.sku AND c.price = p.price AND c.currency = $20::text), \
                 created AS (INSERT INTO orders (id, status, reason, reason_code, customer_id, \
                   email, currency, items, total, shipping_address, payment_token, payment_method_id, \
                   metadata, idempotency_key, request_hash, created_at, updated_at, deadline_at) \
                   SELECT $14::uuid, $15::text, $16::text, $17::text, $18::text, $19::text, $20::text, \
                   $21::jsonb, $22::int8, $23::jsonb, $24::text, $25::text, $26::jsonb, $27::text, \
                   $28::text, $29::timestamptz, $30::timestamptz, $31::timestamptz \
                   WHERE (SELECT ok FROM fresh) \
                   ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
                 timeline AS (INSERT INTO order_timeline (event_id, order_id, event_type, source, \
                   correlation_id, causation_id, occurred_at) \
                   SELECT * FROM unnest($7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], \
                   $12::uuid[], $13::timestamptz[]) \
                   WHERE EXISTS (SELECT 1 FROM created) ON CONFLICT (event_id) DO NOTHING)",
            // The timeline row and the event need the order: they only go
            // in with it.
            when: "EXISTS (SELECT 1 FROM created)",
            then: "SELECT (SELECT count(*) FROM created) AS \"created!\", \
                   (SELECT ok FROM fresh) AS \"fresh!\"",
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
            &self.skus,
            &self.prices,
        )
        .fetch_one(conn)
        .await?;
        Ok(if row.created == 1 {
            Inserted::Created
        } else if row.fresh {
            Inserted::KeyTaken
        } else {
            Inserted::Stale
        })
    }
}

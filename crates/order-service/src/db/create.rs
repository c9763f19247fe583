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
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "WITH created AS (INSERT INTO orders (id, status, reason, reason_code, customer_id, \
                   email, currency, items, total, shipping_address, payment_token, payment_method_id, \
                   metadata, idempotency_key, request_hash, created_at, updated_at, deadline_at) \
                   VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
                   $23, $24, $25) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
                 {}, {} SELECT count(*) FROM created",
                // The timeline row needs the order: it only goes in with it.
                TimelineRows::cte("EXISTS (SELECT 1 FROM created)"),
                outbox::Rows::cte_when("queued", 26, "EXISTS (SELECT 1 FROM created)")
            )
        });
        let o = &self.order;
        let q = self
            .timeline
            .bind(sqlx::query(SQL.as_str()))
            .bind(o.id)
            .bind(o.status.as_str())
            .bind(&o.reason)
            .bind(&o.reason_code)
            .bind(&o.customer_id)
            .bind(&o.email)
            .bind(&o.currency)
            .bind(&o.items)
            .bind(o.total)
            .bind(&o.shipping_address)
            .bind(&o.payment_token)
            .bind(&o.payment_method_id)
            .bind(&o.metadata)
            .bind(&o.idempotency_key)
            .bind(&o.request_hash)
            .bind(o.created_at)
            .bind(o.updated_at)
            .bind(o.deadline_at);
        let row = self.events.bind(q).fetch_one(conn).await?;
        Ok(sqlx::Row::try_get::<i64, _>(&row, 0)? == 1)
    }
}

//! Database access: orders, their timeline, the SKU catalogue, and applying
//! a status transition (row update, timeline, outbox) in the caller's
//! transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use orderflow_events::error::{HandlerError, OutboxError};
use orderflow_events::events::{
    Address, OrderCancelled, OrderConfirmed, OrderDelivered, OrderLine, OrderShipped,
};
use orderflow_events::trace_context::TraceContext;
use orderflow_events::{outbox, Envelope, Event, TopicCatalog};
use orderflow_service::ApiError;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::saga::{Emit, Facts, ReasonCode, Status, Transition};
use crate::timeline::TimelineEntry;
use crate::SOURCE;

/// A database or outbox failure.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed.
    Database(sqlx::Error),
    /// Writing to the outbox failed.
    Outbox(OutboxError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "database: {e}"),
            StoreError::Outbox(e) => write!(f, "outbox: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<OutboxError> for StoreError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Database(e) => StoreError::Database(e),
            other => StoreError::Outbox(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(e) => e.into(),
            StoreError::Outbox(e) => ApiError::internal(e),
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(e) => e.into(),
            StoreError::Outbox(e) => HandlerError::permanent(e.to_string()),
        }
    }
}

/// One row of `orders`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    /// Order id (also the saga's correlation id).
    pub id: Uuid,
    /// Status.
    #[sqlx(try_from = "String")]
    pub status: Status,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// Machine-readable reason of the cancellation.
    pub reason_code: Option<String>,
    /// Customer id.
    pub customer_id: String,
    /// Customer e-mail.
    pub email: String,
    /// Currency.
    pub currency: String,
    /// Lines.
    pub items: Json<Vec<OrderLine>>,
    /// Total in minor units.
    pub total: i64,
    /// Shipping address.
    pub shipping_address: Json<Address>,
    /// Payment token.
    pub payment_token: String,
    /// Fact: stock reserved.
    pub reserved: bool,
    /// Fact: paid.
    pub paid: bool,
    /// Payment id once paid.
    pub payment_id: Option<String>,
    /// Fact: shipment created.
    pub shipping_created: bool,
    /// Tracking number once the shipment exists.
    pub tracking_number: Option<String>,
    /// Fact: confirmation e-mail sent (or finally failed).
    pub notified: bool,
    /// Fact: parcel dispatched.
    pub dispatched: bool,
    /// Fact: parcel delivered.
    pub delivered: bool,
    /// Envelope metadata copied onto emitted events.
    pub metadata: Json<BTreeMap<String, String>>,
    /// `Idempotency-Key` of the creating request.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the creating request.
    pub request_hash: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When the sweeper cancels it if the saga has not moved.
    pub deadline_at: DateTime<Utc>,
}

impl OrderRow {
    /// The facts for the status machine.
    pub fn facts(&self) -> Facts {
        Facts {
            reserved: self.reserved,
            paid: self.paid,
            shipping_created: self.shipping_created,
            notified: self.notified,
            dispatched: self.dispatched,
            delivered: self.delivered,
        }
    }

    fn set_facts(&mut self, f: &Facts) {
        self.reserved = f.reserved;
        self.paid = f.paid;
        self.shipping_created = f.shipping_created;
        self.notified = f.notified;
        self.dispatched = f.dispatched;
        self.delivered = f.delivered;
    }
}

/// The order `id`, locked `FOR UPDATE` when `lock`.
pub async fn fetch_order(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<OrderRow>, sqlx::Error> {
    let sql = if lock {
        "SELECT * FROM orders WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT * FROM orders WHERE id = $1"
    };
    sqlx::query_as(sql).bind(id).fetch_optional(conn).await
}

/// The order created with `Idempotency-Key` `key`.
pub async fn fetch_by_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM orders WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Inserts a new order; `false` when another order already holds its
/// idempotency key (nothing is written then).
pub async fn insert_order(conn: &mut PgConnection, o: &OrderRow) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO orders (id, status, reason, reason_code, customer_id, email, currency, items, \
         total, shipping_address, payment_token, metadata, idempotency_key, request_hash, \
         created_at, updated_at, deadline_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
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
    .bind(&o.metadata)
    .bind(&o.idempotency_key)
    .bind(&o.request_hash)
    .bind(o.created_at)
    .bind(o.updated_at)
    .bind(o.deadline_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes the mutable part of an order (status, reason, facts, timestamps).
async fn save_order(conn: &mut PgConnection, o: &OrderRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET status = $2, reason = $3, reason_code = $4, reserved = $5, paid = $6, \
         payment_id = $7, shipping_created = $8, tracking_number = $9, notified = $10, \
         dispatched = $11, delivered = $12, updated_at = $13, deadline_at = $14 WHERE id = $1",
    )
    .bind(o.id)
    .bind(o.status.as_str())
    .bind(&o.reason)
    .bind(&o.reason_code)
    .bind(o.reserved)
    .bind(o.paid)
    .bind(&o.payment_id)
    .bind(o.shipping_created)
    .bind(&o.tracking_number)
    .bind(o.notified)
    .bind(o.dispatched)
    .bind(o.delivered)
    .bind(o.updated_at)
    .bind(o.deadline_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `envelope` to the timeline of `order_id`; `false` when it is there
/// already.
pub async fn record(
    conn: &mut PgConnection,
    order_id: Uuid,
    envelope: &Envelope,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO order_timeline (event_id, order_id, event_type, source, correlation_id, \
         causation_id, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(envelope.event_id)
    .bind(order_id)
    .bind(envelope.event_type().name())
    .bind(&envelope.source)
    .bind(&envelope.correlation_id)
    .bind(envelope.causation_id)
    .bind(envelope.timestamp)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The timeline of `order_id` in insertion order.
pub async fn timeline(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_id, seq, event_type, source, correlation_id, causation_id, occurred_at \
         FROM order_timeline WHERE order_id = $1 ORDER BY seq",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await
}

/// The id of the last event recorded in the timeline of `order_id`.
pub async fn last_event_id(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT event_id FROM order_timeline WHERE order_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

/// Records `envelope` in the timeline and enqueues it in the outbox, keyed
/// by the order id.
pub async fn emit(
    conn: &mut PgConnection,
    topics: &TopicCatalog,
    order_id: Uuid,
    envelope: &Envelope,
    trace: Option<&TraceContext>,
) -> Result<(), StoreError> {
    record(conn, order_id, envelope).await?;
    outbox::enqueue(conn, topics, &order_id.to_string(), envelope, trace).await?;
    Ok(())
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

/// Applies `t` to `order` (already locked in `conn`'s transaction): writes
/// the row when anything changed and emits `t.emits` (timeline + outbox).
/// `reason` is the human-readable reason of a cancellation.
pub async fn apply_transition(
    conn: &mut PgConnection,
    topics: &TopicCatalog,
    order: &mut OrderRow,
    t: &Transition,
    reason: &str,
    cause: &Cause<'_>,
    clock: &Clock,
) -> Result<(), StoreError> {
    let previous_status = order.status;
    let before = (order.status, order.facts());
    order.set_facts(&t.facts);
    order.status = t.status;
    if t.status != previous_status {
        order.deadline_at = clock.now + clock.timeout;
    }
    for emit in &t.emits {
        if let Emit::Cancelled(code) = emit {
            order.reason = Some(reason.to_owned());
            order.reason_code = Some(code.as_str().to_owned());
        }
    }
    if before != (order.status, order.facts()) || !t.emits.is_empty() {
        order.updated_at = clock.now;
        save_order(conn, order).await?;
    }

    let mut last_local_cause = match cause {
        Cause::Local { .. } if !t.emits.is_empty() => last_event_id(conn, order.id).await?,
        _ => None,
    };
    for &step in &t.emits {
        let payload = payload(order, step, previous_status);
        let (envelope, trace) = match cause {
            Cause::Event { envelope, trace } => (
                Envelope::caused_by(envelope, SOURCE, payload),
                trace.map(TraceContext::child),
            ),
            Cause::Local { trace } => {
                let mut e = Envelope::new(SOURCE, order.id.to_string(), payload);
                e.causation_id = last_local_cause;
                e.metadata = order.metadata.0.clone();
                last_local_cause = Some(e.event_id);
                (e, Some(trace.child()))
            }
        };
        emit(conn, topics, order.id, &envelope, trace.as_ref()).await?;
    }
    crate::metrics::transition(&t.emits, order.created_at, clock.now);
    Ok(())
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
        Emit::Cancelled(code) => OrderCancelled {
            order_id,
            reason: order.reason.clone().unwrap_or_default(),
            reason_code: code.as_str().to_owned(),
            previous_status: previous_status.as_str().to_owned(),
            customer_id: order.customer_id.clone(),
            email: order.email.clone(),
        }
        .into(),
    }
}

/// A cancellation transition with `code` from the order's current state.
pub fn cancellation(order: &OrderRow, code: ReasonCode) -> Transition {
    Transition {
        status: Status::Cancelled,
        facts: order.facts(),
        emits: vec![Emit::Cancelled(code)],
        applied: true,
    }
}

/// Filters and position of a page of `GET /orders`.
pub struct ListFilter<'a> {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this customer.
    pub customer_id: Option<&'a str>,
    /// Strictly after this (created_at, id) in newest-first order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Rows to fetch.
    pub limit: i64,
}

/// Orders newest first (created_at desc, id desc).
pub async fn list_orders(
    conn: &mut PgConnection,
    f: &ListFilter<'_>,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    let (after_ts, after_id) = f.after.unzip();
    sqlx::query_as(
        "SELECT * FROM orders \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR customer_id = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(f.status.map(Status::as_str))
    .bind(f.customer_id)
    .bind(after_ts)
    .bind(after_id)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// Of `skus`, those not in the catalogue (in the given order).
pub async fn unknown_skus(
    conn: &mut PgConnection,
    skus: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let known: Vec<String> = sqlx::query_scalar("SELECT sku FROM catalog WHERE sku = ANY($1)")
        .bind(skus)
        .fetch_all(conn)
        .await?;
    Ok(skus
        .iter()
        .filter(|s| !known.contains(s))
        .cloned()
        .collect())
}

/// Availability of `sku` as last adjusted, if known.
pub async fn catalog_entry(conn: &mut PgConnection, sku: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT available FROM catalog WHERE sku = $1")
        .bind(sku)
        .fetch_optional(conn)
        .await
}

/// Records the availability of `sku` from an `InventoryAdjusted` of
/// `adjusted_at`, unless a newer adjustment is already known.
pub async fn upsert_catalog(
    conn: &mut PgConnection,
    sku: &str,
    available: i32,
    adjusted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalog (sku, available, adjusted_at, updated_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, \
         adjusted_at = EXCLUDED.adjusted_at, updated_at = now() \
         WHERE catalog.adjusted_at <= EXCLUDED.adjusted_at",
    )
    .bind(sku)
    .bind(available)
    .bind(adjusted_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Open orders whose deadline passed before `now`, locked, skipping rows
/// other transactions hold.
pub async fn overdue_orders(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM orders \
         WHERE status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED') \
           AND deadline_at < $1 AND NOT dispatched \
         ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

//! Database access: orders, their timeline, the SKU catalogue, and applying
//! a status transition (row update, timeline, outbox) in the caller's
//! transaction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use orderflow_events::error::{HandlerError, OutboxError};
use orderflow_events::events::{
    Address, OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderDelivered, OrderLine,
    OrderShipped,
};
use orderflow_events::trace_context::TraceContext;
use orderflow_events::{outbox, Envelope, Event, TopicCatalog};
use orderflow_service::ApiError;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::saga::{Emit, Facts, PendingCancel, ReasonCode, Status, Transition};
use crate::domain::timeline::TimelineEntry;
use crate::SOURCE;

mod change;
pub mod writer;

pub use change::{apply_transition, cancel_request, Cause, Change, Clock};

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
    /// When the sweeper cancels it (before payment) or marks it stalled
    /// (after payment) if the saga has not moved.
    pub deadline_at: DateTime<Utc>,
    /// Since when a paid saga has waited past its deadline for its next
    /// step; cleared by the next transition.
    pub stalled_at: Option<DateTime<Utc>>,
    /// The status before `CANCELLING`, while (and after) a cancellation
    /// request waits for the shipping service.
    pub cancel_from: Option<String>,
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

    /// The cancellation request of a `CANCELLING` order.
    pub fn pending_cancel(&self) -> Option<PendingCancel> {
        if self.status != Status::Cancelling {
            return None;
        }
        Some(PendingCancel {
            from: Status::parse(self.cancel_from.as_deref()?)?,
            code: ReasonCode::parse(self.reason_code.as_deref()?)?,
        })
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

/// The orders `ids` that exist, locked `FOR UPDATE` in id order (so two
/// transactions locking overlapping sets cannot deadlock each other).
///
/// Planned on every call ([`UNNAMED`]): a plan for `id = ANY($1)` made while
/// the table was small scans it whole, and would be kept as it grows.
pub async fn lock_orders(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM orders WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .persistent(UNNAMED)
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// `persistent(UNNAMED)`: a statement PostgreSQL plans on every call, with
/// its arguments and the table's current size, instead of a named prepared
/// statement. After five calls PostgreSQL may keep one generic plan for a
/// named statement. For statements that take a set of rows (`= ANY($1)`,
/// a join with `unnest`) or optional filters (`$1 IS NULL OR …`), a generic
/// plan made while the table was small scans the whole table, and is kept
/// until the table is next analysed (an order consumer spent most of its
/// time in such scans). Planning again costs less than a scan.
pub const UNNAMED: bool = false;

/// Events to add to orders' timelines, as columns for one statement.
#[derive(Debug, Default)]
struct TimelineRows {
    event_ids: Vec<Uuid>,
    order_ids: Vec<Uuid>,
    event_types: Vec<&'static str>,
    sources: Vec<String>,
    correlation_ids: Vec<String>,
    causation_ids: Vec<Option<Uuid>>,
    occurred_at: Vec<DateTime<Utc>>,
}

impl TimelineRows {
    /// A `WITH` item adding the rows bound as `$1` to `$7` when the SQL
    /// `condition` holds (an event already there is left alone).
    fn cte(condition: &str) -> String {
        format!(
            "timeline AS (INSERT INTO order_timeline (event_id, order_id, event_type, source, \
             correlation_id, causation_id, occurred_at) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
             $6::uuid[], $7::timestamptz[]) WHERE {condition} ON CONFLICT (event_id) DO NOTHING)"
        )
    }

    fn push(&mut self, order_id: Uuid, envelope: &Envelope) {
        self.event_ids.push(envelope.event_id);
        self.order_ids.push(order_id);
        self.event_types.push(envelope.event_type().name());
        self.sources.push(envelope.source.clone());
        self.correlation_ids.push(envelope.correlation_id.clone());
        self.causation_ids.push(envelope.causation_id);
        self.occurred_at.push(envelope.timestamp);
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.event_ids)
            .bind(&self.order_ids)
            .bind(&self.event_types)
            .bind(&self.sources)
            .bind(&self.correlation_ids)
            .bind(&self.causation_ids)
            .bind(&self.occurred_at)
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
                   email, currency, items, total, shipping_address, payment_token, metadata, \
                   idempotency_key, request_hash, created_at, updated_at, deadline_at) \
                   VALUES ($8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
                   $23, $24) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
                 {}, {} SELECT count(*) FROM created",
                // The timeline row needs the order: it only goes in with it.
                TimelineRows::cte("EXISTS (SELECT 1 FROM created)"),
                outbox::Rows::cte_when("queued", 25, "EXISTS (SELECT 1 FROM created)")
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
    .persistent(UNNAMED)
    .bind(f.status.map(Status::as_str))
    .bind(f.customer_id)
    .bind(after_ts)
    .bind(after_id)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

/// What a new order must be checked against, read in one round trip.
pub struct Admission {
    /// The id of the order created with the request's `Idempotency-Key`.
    pub existing: Option<Uuid>,
    /// The order's SKUs not in the catalogue, in the given order.
    pub unknown_skus: Vec<String>,
    /// The catalogue price (amount, currency) of each known SKU of the
    /// order; `None` while the SKU has no price.
    pub prices: HashMap<String, Option<(i64, String)>>,
}

/// Looks up the order holding idempotency `key` (if any), which of `skus`
/// the catalogue does not know, and the prices of those it knows.
pub async fn admission(
    conn: &mut PgConnection,
    key: Option<&str>,
    skus: &[String],
) -> Result<Admission, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let (existing, unknown_skus, known, amounts, currencies): (
        Option<Uuid>,
        Vec<String>,
        Vec<String>,
        Vec<Option<i64>>,
        Vec<Option<String>>,
    ) = sqlx::query_as(
        "SELECT (SELECT id FROM orders WHERE idempotency_key = $1), \
         ARRAY(SELECT s.sku FROM unnest($2::text[]) WITH ORDINALITY AS s (sku, n) \
               WHERE NOT EXISTS (SELECT 1 FROM catalog c WHERE c.sku = s.sku) ORDER BY s.n), \
         ARRAY(SELECT c.sku FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku), \
         ARRAY(SELECT c.price FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku), \
         ARRAY(SELECT c.currency FROM catalog c WHERE c.sku = ANY($2) ORDER BY c.sku)",
    )
    .bind(key)
    .bind(skus)
    .fetch_one(conn)
    .await?;
    let prices = known
        .into_iter()
        .zip(amounts.into_iter().zip(currencies))
        .map(|(sku, (amount, currency))| (sku, amount.zip(currency)))
        .collect();
    Ok(Admission {
        existing,
        unknown_skus,
        prices,
    })
}

/// A SKU as the catalogue knows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogEntry {
    /// Units available as last adjusted.
    pub available: i32,
    /// Price of one unit in minor units of `currency`, if priced.
    pub price: Option<i64>,
    /// ISO 4217 code of `price`.
    pub currency: Option<String>,
}

/// `sku` as last adjusted, if known.
pub async fn catalog_entry(
    conn: &mut PgConnection,
    sku: &str,
) -> Result<Option<CatalogEntry>, sqlx::Error> {
    sqlx::query_as("SELECT available, price, currency FROM catalog WHERE sku = $1")
        .bind(sku)
        .fetch_optional(conn)
        .await
}

/// Records `sku` as of an `InventoryAdjusted` of `adjusted_at` (its
/// availability and price: the event carries the whole level), unless a
/// newer adjustment is already known.
pub async fn upsert_catalog(
    conn: &mut PgConnection,
    sku: &str,
    entry: &CatalogEntry,
    adjusted_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO catalog (sku, available, price, currency, adjusted_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, \
         price = EXCLUDED.price, currency = EXCLUDED.currency, \
         adjusted_at = EXCLUDED.adjusted_at, updated_at = now() \
         WHERE catalog.adjusted_at <= EXCLUDED.adjusted_at",
    )
    .bind(sku)
    .bind(entry.available)
    .bind(entry.price)
    .bind(&entry.currency)
    .bind(adjusted_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a paid order whose deadline passed as stalled (keeping the first
/// time it was) and gives it a new deadline; returns whether it was not
/// stalled before.
pub async fn mark_stalled(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    next_deadline: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE orders SET stalled_at = COALESCE(stalled_at, $2), deadline_at = $3 \
         WHERE id = $1 RETURNING stalled_at = $2",
    )
    .bind(id)
    .bind(now)
    .bind(next_deadline)
    .fetch_one(conn)
    .await
}

/// Stalled sagas by the status they are stuck in.
pub async fn stalled_by_status(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, count(*) FROM orders WHERE stalled_at IS NOT NULL GROUP BY status",
    )
    .fetch_all(conn)
    .await
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
         WHERE status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED', \
             'CANCELLING') \
           AND deadline_at < $1 AND NOT dispatched \
         ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

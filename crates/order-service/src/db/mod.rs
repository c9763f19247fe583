//! Database access: orders, their timeline, the SKU catalogue, and applying
//! a status transition (row update, timeline, outbox) in the caller's
//! transaction.
//!
//! This module has the order row and its locking reads; [`create`] writes a
//! new order, [`change`] a transition, [`read`] the API's reads,
//! [`catalog`] the SKU catalogue and admission checks, [`deadline`] the
//! sweeper's queries.

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

mod catalog;
mod change;
mod create;
mod deadline;
pub mod journal;
mod read;
pub mod writer;

pub use catalog::{admission, catalog_entry, upsert_catalog, Admission, CatalogEntry, PriceCache};
pub use change::{apply_transition, cancel_request, Cause, Change, Clock};
pub use create::{Inserted, NewOrder};
pub use deadline::{mark_stalled, overdue_orders, stalled_by_status};
pub use read::{last_event_id, list_orders, timeline, ListFilter};

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
    /// Card token: only on orders placed before payment methods.
    pub payment_token: Option<String>,
    /// The payment method (`pm_…`) the payment service charges.
    pub payment_method_id: Option<String>,
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

/// A stored status is its text ([`Status::as_str`]); one the code does not
/// know fails the read.
impl sqlx::Type<sqlx::Postgres> for Status {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Status {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Status::try_from(text.to_owned())?)
    }
}

/// `query_as!` of [`OrderRow`]s: every column of `orders`, then `$tail`.
macro_rules! select_orders {
    ($tail:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            OrderRow,
            r#"SELECT id, status AS "status: Status", reason, reason_code, customer_id, email,
                 currency, items AS "items: Json<Vec<OrderLine>>", total,
                 shipping_address AS "shipping_address: Json<Address>", payment_token,
                 payment_method_id, reserved, paid, payment_id, shipping_created,
                 tracking_number, notified, dispatched, delivered,
                 metadata AS "metadata: Json<BTreeMap<String, String>>", idempotency_key,
                 request_hash, created_at, updated_at, deadline_at, stalled_at, cancel_from
               FROM orders "# + $tail
            $(, $arg)*
        )
    };
}
use select_orders;

/// The order `id`, locked `FOR UPDATE` when `lock`.
pub async fn fetch_order(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<OrderRow>, sqlx::Error> {
    if lock {
        select_orders!("WHERE id = $1 FOR UPDATE", id)
            .fetch_optional(conn)
            .await
    } else {
        select_orders!("WHERE id = $1", id)
            .fetch_optional(conn)
            .await
    }
}

/// The orders `ids` that exist, locked `FOR UPDATE` in id order (so two
/// transactions locking overlapping sets cannot deadlock each other).
///
/// Planned on every call ([`UNNAMED`]): a plan for `id = ANY($1)` made while
/// the table was small scans it whole, and would be kept as it grows. So a
/// runtime query: sqlx's checked ones with a result are always prepared.
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
    fn push(&mut self, order_id: Uuid, envelope: &Envelope) {
        self.event_ids.push(envelope.event_id);
        self.order_ids.push(order_id);
        self.event_types.push(envelope.event_type().name());
        self.sources.push(envelope.source.clone());
        self.correlation_ids.push(envelope.correlation_id.clone());
        self.causation_ids.push(envelope.causation_id);
        self.occurred_at.push(envelope.timestamp);
    }
}

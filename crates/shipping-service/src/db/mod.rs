//! The `shipments` table. Every function takes a connection so the caller
//! owns the transaction.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use orderflow_events::events::{Address, StockLine};
use orderflow_events::outbox;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::Status;

/// Every column of a row, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    order_id: String,
    shipment_id: Option<Uuid>,
    tracking_number: Option<String>,
    carrier: Option<String>,
    label_url: Option<String>,
    status: String,
    recipient: Option<serde_json::Value>,
    items: Option<serde_json::Value>,
    correlation_id: String,
    last_event_id: Uuid,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    dispatched_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
}

/// A real shipment (not a tombstone).
#[derive(Debug, Clone)]
pub struct Shipment {
    /// Order id (primary key).
    pub order_id: String,
    /// Shipment id.
    pub shipment_id: Uuid,
    /// Tracking number.
    pub tracking_number: String,
    /// Carrier.
    pub carrier: String,
    /// Label URL path.
    pub label_url: String,
    /// Status (never `VOIDED`).
    pub status: Status,
    /// Where it goes.
    pub recipient: Address,
    /// What is in it.
    pub items: Vec<StockLine>,
    /// Saga id of the order.
    pub correlation_id: String,
    /// Last event applied or emitted for the order: the cause of the next.
    pub last_event_id: Uuid,
    /// Metadata carried from cause to effect.
    pub metadata: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it was dispatched.
    pub dispatched_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// What the table holds for an order.
#[derive(Debug, Clone)]
pub enum Record {
    /// The order was cancelled before any shipment existed.
    Tombstone,
    /// A shipment.
    Shipment(Box<Shipment>),
}

impl Record {
    /// The shipment, unless this is a tombstone.
    pub fn into_shipment(self) -> Option<Shipment> {
        match self {
            Record::Tombstone => None,
            Record::Shipment(s) => Some(*s),
        }
    }
}

/// A stored row that breaks the table's invariants.
#[derive(Debug, thiserror::Error)]
#[error("corrupt shipment row for order {order_id}: {problem}")]
pub struct CorruptRow {
    order_id: String,
    problem: String,
}

/// Reading a shipment failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A row is inconsistent.
    #[error(transparent)]
    Corrupt(#[from] CorruptRow),
}

impl TryFrom<Row> for Record {
    type Error = CorruptRow;

    fn try_from(r: Row) -> Result<Self, CorruptRow> {
        let corrupt = |problem: String| CorruptRow {
            order_id: r.order_id.clone(),
            problem,
        };
        let status =
            Status::parse(&r.status).ok_or_else(|| corrupt(format!("status {:?}", r.status)))?;
        if status == Status::Voided {
            return Ok(Record::Tombstone);
        }
        let missing = |column: &str| corrupt(format!("{column} is NULL"));
        let recipient: Address =
            serde_json::from_value(r.recipient.clone().ok_or_else(|| missing("recipient"))?)
                .map_err(|e| corrupt(format!("recipient: {e}")))?;
        let items: Vec<StockLine> =
            serde_json::from_value(r.items.clone().ok_or_else(|| missing("items"))?)
                .map_err(|e| corrupt(format!("items: {e}")))?;
        let metadata: BTreeMap<String, String> = serde_json::from_value(r.metadata.clone())
            .map_err(|e| corrupt(format!("metadata: {e}")))?;
        Ok(Record::Shipment(Box::new(Shipment {
            shipment_id: r.shipment_id.ok_or_else(|| missing("shipment_id"))?,
            tracking_number: r
                .tracking_number
                .clone()
                .ok_or_else(|| missing("tracking_number"))?,
            carrier: r.carrier.clone().ok_or_else(|| missing("carrier"))?,
            label_url: r.label_url.clone().ok_or_else(|| missing("label_url"))?,
            status,
            recipient,
            items,
            metadata,
            order_id: r.order_id,
            correlation_id: r.correlation_id,
            last_event_id: r.last_event_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            dispatched_at: r.dispatched_at,
            delivered_at: r.delivered_at,
        })))
    }
}

/// A shipment to create.
#[derive(Debug, Clone)]
pub struct NewShipment<'a> {
    /// Order id.
    pub order_id: &'a str,
    /// Shipment id.
    pub shipment_id: Uuid,
    /// Tracking number.
    pub tracking_number: &'a str,
    /// Carrier.
    pub carrier: &'a str,
    /// Label URL path.
    pub label_url: &'a str,
    /// Where it goes.
    pub recipient: &'a Address,
    /// Customer e-mail.
    pub email: &'a str,
    /// What is in it.
    pub items: &'a [StockLine],
    /// Saga id.
    pub correlation_id: &'a str,
    /// The `ShippingCreated` event emitted with it.
    pub event_id: Uuid,
    /// Metadata of the cause.
    pub metadata: &'a BTreeMap<String, String>,
}

fn json(value: impl serde::Serialize) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::to_value(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// Inserts `CREATED` shipments, each unless any of its unique keys (order
/// id, shipment id, tracking number) is taken, and queues the `events` of
/// the inserted ones (keyed by their order ids), in one statement. Returns
/// the orders whose shipment was inserted. The order ids must differ.
pub async fn insert_created_all(
    conn: &mut PgConnection,
    shipments: &[NewShipment<'_>],
    events: &outbox::Rows,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut recipients = Vec::with_capacity(shipments.len());
    let mut items = Vec::with_capacity(shipments.len());
    let mut metadata = Vec::with_capacity(shipments.len());
    for s in shipments {
        recipients.push(json(s.recipient)?);
        items.push(json(s.items)?);
        metadata.push(json(s.metadata)?);
    }
    let column = |f: for<'a> fn(&NewShipment<'a>) -> &'a str| -> Vec<&str> {
        shipments.iter().map(f).collect()
    };
    let shipment_ids: Vec<Uuid> = shipments.iter().map(|s| s.shipment_id).collect();
    let event_ids: Vec<Uuid> = shipments.iter().map(|s| s.event_id).collect();
    let created: Vec<String> = orderflow_events::query_queueing!(
        with: "created AS (\
               INSERT INTO shipments (order_id, shipment_id, tracking_number, carrier, label_url, \
               status, recipient, email, items, correlation_id, last_event_id, metadata) \
               SELECT s.order_id, s.shipment_id, s.tracking_number, s.carrier, s.label_url, \
                 'CREATED', s.recipient, s.email, s.items, s.correlation_id, s.last_event_id, s.metadata \
               FROM unnest($7::text[], $8::uuid[], $9::text[], $10::text[], $11::text[], $12::jsonb[], \
                 $13::text[], $14::jsonb[], $15::text[], $16::uuid[], $17::jsonb[]) \
                 AS s(order_id, shipment_id, tracking_number, carrier, label_url, recipient, email, \
                   items, correlation_id, last_event_id, metadata) \
               ON CONFLICT DO NOTHING RETURNING order_id)",
        when: "e.partition_key IN (SELECT order_id FROM created)",
        then: "SELECT order_id AS \"order_id!\" FROM created",
        rows: events,
        &column(|s| s.order_id) as &[&str],
        &shipment_ids,
        &column(|s| s.tracking_number) as &[&str],
        &column(|s| s.carrier) as &[&str],
        &column(|s| s.label_url) as &[&str],
        &recipients,
        &column(|s| s.email) as &[&str],
        &items,
        &column(|s| s.correlation_id) as &[&str],
        &event_ids,
        &metadata,
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| r.order_id)
    .collect();
    Ok(created.into_iter().collect())
}

/// Which of `order_ids` have a row (shipment or tombstone).
pub async fn existing(
    conn: &mut PgConnection,
    order_ids: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    // Not `query!`: planned on every call (`persistent(false)`), which sqlx's
    // checked queries cannot do (they are always prepared and cached).
    let found: Vec<String> =
        sqlx::query_scalar("SELECT order_id FROM shipments WHERE order_id = ANY($1)")
            .bind(order_ids)
            .persistent(false)
            .fetch_all(conn)
            .await?;
    Ok(found.into_iter().collect())
}

/// Inserts a `VOIDED` tombstone unless the order has a row, recording the
/// cancelling event `cause` (its saga, id and metadata). `true` when the
/// tombstone was inserted.
pub async fn insert_tombstone(
    conn: &mut PgConnection,
    order_id: &str,
    cause: &orderflow_events::Envelope,
) -> Result<bool, sqlx::Error> {
    let (correlation_id, event_id, metadata) =
        (&cause.correlation_id, cause.event_id, &cause.metadata);
    let done = sqlx::query!(
        "INSERT INTO shipments (order_id, status, correlation_id, last_event_id, metadata) \
         VALUES ($1, 'VOIDED', $2, $3, $4) ON CONFLICT (order_id) DO NOTHING",
        order_id,
        correlation_id,
        event_id,
        json(metadata)?
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The order's row, if any.
pub async fn get(conn: &mut PgConnection, order_id: &str) -> Result<Option<Record>, DbError> {
    let row = sqlx::query_as!(
        Row,
        "SELECT order_id, shipment_id, tracking_number, carrier, label_url, status, recipient, \
         items, correlation_id, last_event_id, metadata, created_at, updated_at, dispatched_at, \
         delivered_at FROM shipments WHERE order_id = $1",
        order_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Record::try_from).transpose()?)
}

/// The order's row, if any, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, order_id: &str) -> Result<Option<Record>, DbError> {
    let row = sqlx::query_as!(
        Row,
        "SELECT order_id, shipment_id, tracking_number, carrier, label_url, status, recipient, \
         items, correlation_id, last_event_id, metadata, created_at, updated_at, dispatched_at, \
         delivered_at FROM shipments WHERE order_id = $1 FOR UPDATE",
        order_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Record::try_from).transpose()?)
}

/// Moves a shipment to `status` at `at` (which sets `dispatched_at` or
/// `delivered_at`), recording `event_id` as its last event. Returns the
/// updated shipment.
pub async fn set_status(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    at: DateTime<Utc>,
    event_id: Uuid,
) -> Result<Option<Record>, DbError> {
    let row = sqlx::query_as!(
        Row,
        "UPDATE shipments SET status = $2, last_event_id = $4, updated_at = $3, \
         dispatched_at = CASE WHEN $2 = 'DISPATCHED' THEN $3 ELSE dispatched_at END, \
         delivered_at = CASE WHEN $2 = 'DELIVERED' THEN $3 ELSE delivered_at END \
         WHERE order_id = $1 RETURNING order_id, shipment_id, tracking_number, carrier, \
         label_url, status, recipient, items, correlation_id, last_event_id, metadata, \
         created_at, updated_at, dispatched_at, delivered_at",
        order_id,
        status.as_str(),
        at,
        event_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Record::try_from).transpose()?)
}

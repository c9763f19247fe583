//! The `notifications` table. Every function takes a connection so the
//! caller owns the transaction.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use orderflow_events::outbox;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::email::Kind;

/// Advisory-lock class of "one order's notifications" (two-key form, so it
/// cannot collide with the relay's one-key lock).
const ORDER_LOCK_CLASS: i32 = 0x4e4f_5449; // "NOTI"

/// Serialises the handlers of one order until the transaction ends, so a
/// confirmation and a cancellation handled at the same time on different
/// partitions see each other's row.
pub async fn lock_order(conn: &mut PgConnection, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(ORDER_LOCK_CLASS)
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The kinds already recorded for an order.
pub async fn kinds(conn: &mut PgConnection, order_id: &str) -> Result<Vec<Kind>, sqlx::Error> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM notifications WHERE order_id = $1")
            .bind(order_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.iter().filter_map(|k| Kind::parse(k)).collect())
}

/// Outcome of one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The SMTP server accepted it.
    Sent,
    /// It can never be sent.
    Failed,
}

impl Status {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "SENT",
            Status::Failed => "FAILED",
        }
    }
}

/// A notification to record.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    /// Id.
    pub id: Uuid,
    /// Order id.
    pub order_id: &'a str,
    /// Kind.
    pub kind: Kind,
    /// Recipient address.
    pub recipient: &'a str,
    /// Subject line.
    pub subject: &'a str,
    /// Outcome.
    pub status: Status,
    /// Why it failed.
    pub error: Option<&'a str>,
    /// `Message-ID` header.
    pub message_id: &'a str,
    /// The event that caused it.
    pub cause_event_id: Uuid,
}

/// Records a notification and queues `events` (its outcome), in one
/// statement; `false` (and nothing written) when the order already has one
/// of this kind.
pub async fn insert(
    conn: &mut PgConnection,
    n: &NewNotification<'_>,
    events: &outbox::Rows,
) -> Result<bool, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH recorded AS (\
               INSERT INTO notifications (id, order_id, kind, recipient, subject, status, error, \
               message_id, cause_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
               ON CONFLICT (order_id, kind) DO NOTHING RETURNING id), \
             {} \
             SELECT count(*) FROM recorded",
            outbox::Rows::cte_when("queued", 10, "EXISTS (SELECT 1 FROM recorded)")
        )
    });
    let recorded: i64 = events
        .bind(
            sqlx::query(SQL.as_str())
                .bind(n.id)
                .bind(n.order_id)
                .bind(n.kind.as_str())
                .bind(n.recipient)
                .bind(n.subject)
                .bind(n.status.as_str())
                .bind(n.error)
                .bind(n.message_id)
                .bind(n.cause_event_id),
        )
        .try_map(|row: sqlx::postgres::PgRow| row.try_get(0))
        .fetch_one(conn)
        .await?;
    Ok(recorded == 1)
}

/// A stored notification.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Notification {
    /// Id.
    pub id: Uuid,
    /// Order id.
    pub order_id: String,
    /// Kind.
    pub kind: String,
    /// Recipient address.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// `SENT` or `FAILED`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// `Message-ID` header.
    pub message_id: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, order_id, kind, recipient, subject, status, error, message_id, created_at";

/// An order's notifications, oldest first.
pub async fn for_order(
    conn: &mut PgConnection,
    order_id: &str,
    limit: i64,
) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE order_id = $1 \
         ORDER BY created_at, id LIMIT $2"
    ))
    .bind(order_id)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The latest notifications, newest first.
pub async fn latest(conn: &mut PgConnection, limit: i64) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications ORDER BY created_at DESC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

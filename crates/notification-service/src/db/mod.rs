//! The `notifications` table. Every function takes a connection so the
//! caller owns the transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use orderflow_events::outbox;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::email::Kind;

/// Advisory-lock class of "one order's notifications" (two-key form, so it
/// cannot collide with the relay's one-key lock).
const ORDER_LOCK_CLASS: i32 = 0x4e4f_5449; // "NOTI"

/// Serialises the handlers of the same orders until the transaction ends,
/// so a confirmation and a cancellation handled at the same time on
/// different partitions see each other's row. The locks are taken in one
/// order (by hash), so two batches never wait for each other in a circle.
pub async fn lock_orders(conn: &mut PgConnection, order_ids: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, h) FROM \
         (SELECT DISTINCT hashtext(o) AS h FROM unnest($2::text[]) AS o ORDER BY h) AS locks",
        ORDER_LOCK_CLASS,
        order_ids as &[&str]
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The kinds already recorded for each of `order_ids` (orders without any
/// are absent). Planned on every call: a generic plan for `= ANY($1)` made
/// while the table was small would scan all of it.
pub async fn kinds(
    conn: &mut PgConnection,
    order_ids: &[&str],
) -> Result<HashMap<String, Vec<Kind>>, sqlx::Error> {
    // Not `query!`: planned on every call (`persistent(false)`), which sqlx's
    // checked queries cannot do (they are always prepared and cached).
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT order_id, kind FROM notifications WHERE order_id = ANY($1)")
            .persistent(false)
            .bind(order_ids)
            .fetch_all(conn)
            .await?;
    let mut kinds: HashMap<String, Vec<Kind>> = HashMap::new();
    for (order_id, kind) in rows {
        if let Some(k) = Kind::parse(&kind) {
            kinds.entry(order_id).or_default().push(k);
        }
    }
    Ok(kinds)
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
    pub error: Option<String>,
    /// `Message-ID` header.
    pub message_id: &'a str,
    /// The event that caused it.
    pub cause_event_id: Uuid,
}

/// Records `notifications` and queues `events` (their outcomes), in one
/// statement. The caller holds the orders' locks and has checked that each
/// kind is new: a second notification of one kind for an order fails the
/// statement, and nothing is written.
pub async fn insert(
    conn: &mut PgConnection,
    notifications: &[NewNotification<'_>],
    events: &outbox::Rows,
) -> Result<(), sqlx::Error> {
    if notifications.is_empty() {
        return Ok(());
    }
    fn column<'a>(
        notifications: &'a [NewNotification<'_>],
        f: impl Fn(&'a NewNotification<'_>) -> &'a str,
    ) -> Vec<&'a str> {
        notifications.iter().map(f).collect()
    }
    let ids: Vec<Uuid> = notifications.iter().map(|n| n.id).collect();
    let errors: Vec<Option<&str>> = notifications.iter().map(|n| n.error.as_deref()).collect();
    let causes: Vec<Uuid> = notifications.iter().map(|n| n.cause_event_id).collect();
    orderflow_events::query_queueing!(
        with: "recorded AS (\
               INSERT INTO notifications (id, order_id, kind, recipient, subject, status, error, \
               message_id, cause_event_id) \
               SELECT * FROM unnest($7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], \
                 $12::text[], $13::text[], $14::text[], $15::uuid[]))",
        when: "true",
        then: "SELECT 1 AS one",
        rows: events,
        &ids,
        &column(notifications, |n| n.order_id) as &[&str],
        &column(notifications, |n| n.kind.as_str()) as &[&str],
        &column(notifications, |n| n.recipient) as &[&str],
        &column(notifications, |n| n.subject) as &[&str],
        &column(notifications, |n| n.status.as_str()) as &[&str],
        &errors as &[Option<&str>],
        &column(notifications, |n| n.message_id) as &[&str],
        &causes,
    )
    .fetch_one(conn)
    .await?;
    Ok(())
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

/// An order's notifications, oldest first.
pub async fn for_order(
    conn: &mut PgConnection,
    order_id: &str,
    limit: i64,
) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as!(
        Notification,
        "SELECT id, order_id, kind, recipient, subject, status, error, message_id, created_at \
         FROM notifications WHERE order_id = $1 ORDER BY created_at, id LIMIT $2",
        order_id,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The latest notifications, newest first.
pub async fn latest(conn: &mut PgConnection, limit: i64) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as!(
        Notification,
        "SELECT id, order_id, kind, recipient, subject, status, error, message_id, created_at \
         FROM notifications ORDER BY created_at DESC, id DESC LIMIT $1",
        limit
    )
    .fetch_all(conn)
    .await
}

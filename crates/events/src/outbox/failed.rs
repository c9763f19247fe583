//! Rows the relay set aside in `outbox_failed` because it could not encode
//! them (a bug upstream, never expected): listing them, and moving them
//! back into the outbox once the cause is fixed, for `orderctl outbox`.
//! Nothing here publishes: the relay does, from the outbox, as for any row.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// One set-aside row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct FailedRow {
    /// Its outbox id.
    pub id: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The topic it was for.
    pub topic: String,
    /// Its key.
    pub partition_key: String,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// When the relay set it aside.
    pub failed_at: DateTime<Utc>,
    /// Why it could not be encoded.
    pub reason: String,
}

/// Every set-aside row, oldest first.
pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<FailedRow>> {
    sqlx::query_as!(
        FailedRow,
        "SELECT id, event_id, event_type, topic, partition_key, created_at, failed_at, reason \
         FROM outbox_failed ORDER BY id"
    )
    .fetch_all(conn)
    .await
}

/// Moves the rows `ids` (every row with `None`) back into the outbox, in
/// one statement, as new rows (after every row waiting there); returns the
/// event ids moved. An event already back in the outbox is not added twice.
/// A row that still cannot be encoded is set aside again by the relay.
pub async fn retry(conn: &mut PgConnection, ids: Option<&[i64]>) -> sqlx::Result<Vec<Uuid>> {
    // Not `query!`: planned on every call (`persistent(false)`), which
    // sqlx's checked queries with a result cannot do.
    sqlx::query_scalar(
        "WITH moved AS (DELETE FROM outbox_failed WHERE $1::int8[] IS NULL OR id = ANY($1) \
           RETURNING id, event_id, event_type, topic, partition_key, envelope, headers, created_at) \
         INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope, headers, created_at) \
         SELECT event_id, event_type, topic, partition_key, envelope, headers, created_at \
         FROM moved ORDER BY id ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    .bind(ids)
    .persistent(false)
    .fetch_all(conn)
    .await
}

//! The inbox: which events a consumer group has applied. A row is written in
//! the same transaction as the handler's effect, so an event redelivered by
//! Kafka (or replayed) is recognised and skipped.

use sqlx::PgConnection;
use uuid::Uuid;

/// Where a consumed record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Records that `group` applies `event_id` now. Returns `false` when it was
/// applied before: the caller must then skip the effect.
pub async fn try_record(
    conn: &mut PgConnection,
    group: &str,
    event_id: Uuid,
    event_type: &str,
    origin: &Origin,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(event_id)
    .bind(event_type)
    .bind(&origin.topic)
    .bind(origin.partition)
    .bind(origin.offset)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

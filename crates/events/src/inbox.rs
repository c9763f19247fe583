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

/// One event to record with [`record_new`].
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Event id.
    pub event_id: Uuid,
    /// Event type name.
    pub event_type: &'a str,
    /// Where it was read from.
    pub origin: &'a Origin,
}

/// Records that `group` applies `entries` now, in one statement, and
/// returns the ids of those not applied before: the caller must skip the
/// effect of the others. An id given twice is recorded (and returned) once.
pub async fn record_new(
    conn: &mut PgConnection,
    group: &str,
    entries: &[Entry<'_>],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    let (mut ids, mut types, mut topics, mut partitions, mut offsets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for e in entries {
        if seen.insert(e.event_id) {
            ids.push(e.event_id);
            types.push(e.event_type);
            topics.push(e.origin.topic.as_str());
            partitions.push(e.origin.partition);
            offsets.push(e.origin.offset);
        }
    }
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let fresh: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) \
         SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int4[], $6::int8[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(group)
    .bind(&ids)
    .bind(&types)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// Takes the entries of `event_ids` out of `group`'s inbox again, within
/// the transaction that recorded them (a record whose handler then failed).
pub async fn forget(
    conn: &mut PgConnection,
    group: &str,
    event_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2)")
        .bind(group)
        .bind(event_ids)
        .persistent(false)
        .execute(conn)
        .await?;
    Ok(())
}

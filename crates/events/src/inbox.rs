//! The inbox: which events a consumer group has applied. A row is written in
//! the same transaction as the handler's effect, so an event redelivered by
//! Kafka (or replayed) is recognised and skipped.
//!
//! A row is needed while a copy of its event can still reach the group: as
//! long as its topic keeps records (a consumer group moved back reads them
//! again), and a while longer for a dead letter of the same event sent back
//! late by `orderctl dlq redrive` (a dead-letter topic keeps its records as
//! long as its source). [`prune`] deletes the rows older than their topic's
//! retention plus a margin; rows of a topic kept forever stay forever.

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
    let done = sqlx::query!(
        "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        group,
        event_id,
        event_type,
        &origin.topic,
        origin.partition,
        origin.offset
    )
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
    let fresh: Vec<Uuid> = sqlx::query_scalar!(
        "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) \
         SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int4[], $6::int8[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
        group,
        &ids,
        &types as &[&str],
        &topics as &[&str],
        &partitions,
        &offsets
    )
    .fetch_all(conn)
    .await?;
    Ok(fresh.into_iter().collect())
}

/// `BEGIN` and the insert of `entries` into `group`'s inbox, as one
/// simple-query string for [`sqlx::Connection::begin_with`], with the ids it
/// records: the transaction opens and records its batch in one round trip
/// instead of two.
///
/// The insert has no `ON CONFLICT`: when an entry was recorded before, the
/// statement fails with a unique violation ([`recorded_before`]) inside the
/// transaction it opened, and the caller rolls that back and takes
/// [`record_new`], which sorts the duplicates out. Events arrive again only
/// after a restart, a rebalance or a redrive, so that is rare.
///
/// The values are written into the SQL text, so this returns `None` (take
/// [`record_new`]) when there are no entries or a value holds anything but
/// ASCII letters, digits, `.`, `_` and `-` (the alphabet of Kafka topic
/// names): such values need no quoting and cannot end the literal.
pub fn begin_recording(
    group: &str,
    entries: &[Entry<'_>],
) -> Option<(String, std::collections::HashSet<Uuid>)> {
    use std::fmt::Write as _;
    fn plain(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }
    if entries.is_empty() || !plain(group) {
        return None;
    }
    let mut ids = std::collections::HashSet::with_capacity(entries.len());
    let mut sql = String::with_capacity(64 + entries.len() * 120);
    sql.push_str(
        "BEGIN; INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) VALUES ",
    );
    for e in entries {
        if !plain(e.event_type) || !plain(&e.origin.topic) {
            return None;
        }
        if !ids.insert(e.event_id) {
            continue; // given twice: recorded once, as record_new does
        }
        if ids.len() > 1 {
            sql.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(
            sql,
            "('{group}','{}','{}','{}',{},{})",
            e.event_id, e.event_type, e.origin.topic, e.origin.partition, e.origin.offset
        );
    }
    Some((sql, ids))
}

/// Whether `error` is the unique violation of a [`begin_recording`]
/// statement that met an entry recorded before.
pub fn recorded_before(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
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
    sqlx::query!(
        "DELETE FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2)",
        group,
        event_ids
    )
    .persistent(false)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the inbox rows of `topic` written more than `keep` ago, in
/// batches of `batch` rows (each its own statement, so no long lock);
/// returns how many were deleted.
pub async fn prune_topic(
    pool: &sqlx::PgPool,
    topic: &str,
    keep: std::time::Duration,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    loop {
        let done = sqlx::query!(
            "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox \
             WHERE topic = $1 AND processed_at < now() - make_interval(secs => $2::float8 / 1000) \
             LIMIT $3))",
            topic,
            keep_ms as f64,
            batch
        )
        .execute(pool)
        .await?
        .rows_affected();
        deleted += done;
        if done < u64::try_from(batch).unwrap_or(0) {
            return Ok(deleted);
        }
    }
}

/// [`prune_topic`] for every stream topic of `catalog` that does not keep
/// its records forever, each keeping its retention plus `margin`; returns
/// the rows deleted per topic (topics with none left out).
pub async fn prune(
    pool: &sqlx::PgPool,
    catalog: &crate::TopicCatalog,
    margin: std::time::Duration,
) -> Result<Vec<(String, u64)>, sqlx::Error> {
    let mut out = Vec::new();
    for stream in crate::Stream::ALL {
        let spec = catalog.spec(stream);
        let Ok(retention_ms) = u64::try_from(spec.retention_ms) else {
            continue; // -1: kept forever, so are its rows
        };
        let keep = std::time::Duration::from_millis(retention_ms) + margin;
        let n = prune_topic(pool, &spec.name, keep, 10_000).await?;
        if n > 0 {
            out.push((spec.name.clone(), n));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(topic: &str) -> Origin {
        Origin {
            topic: topic.into(),
            partition: 3,
            offset: 41,
        }
    }

    #[test]
    fn begin_recording_writes_each_id_once() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let o = origin("order-events");
        let entry = |event_id| Entry {
            event_id,
            event_type: "OrderCreated",
            origin: &o,
        };
        let (sql, ids) =
            begin_recording("inventory-service", &[entry(a), entry(b), entry(a)]).expect("plain");
        assert_eq!(ids, [a, b].into_iter().collect());
        assert!(sql.starts_with("BEGIN; INSERT INTO inbox "), "{sql}");
        assert_eq!(
            sql.matches("('inventory-service','").count(),
            2,
            "one row per id: {sql}"
        );
        assert!(
            sql.ends_with(&format!(
                "('inventory-service','{b}','OrderCreated','order-events',3,41)"
            )),
            "{sql}"
        );
        assert!(!sql.contains("ON CONFLICT"), "a duplicate must fail: {sql}");
    }

    #[test]
    fn begin_recording_takes_only_values_that_need_no_quoting() {
        let id = Uuid::new_v4();
        let plain = origin("order-events");
        let quoted = origin("order'events");
        let entry = |origin, event_type| Entry {
            event_id: id,
            event_type,
            origin,
        };
        assert!(begin_recording("g", &[]).is_none(), "nothing to record");
        assert!(begin_recording("g'); DROP TABLE inbox; --", &[entry(&plain, "T")]).is_none());
        assert!(begin_recording("", &[entry(&plain, "T")]).is_none());
        assert!(begin_recording("g", &[entry(&quoted, "T")]).is_none());
        assert!(begin_recording("g", &[entry(&plain, "T x")]).is_none());
        assert!(begin_recording("g", &[entry(&plain, "Tä")]).is_none());
        assert!(begin_recording("g-1.a_b", &[entry(&plain, "T")]).is_some());
    }
}

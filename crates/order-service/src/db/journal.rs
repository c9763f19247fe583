//! The order journal: every event of the saga's topics by correlation id,
//! with where the log holds it. A projection: the live table is written by
//! the journal's own consumer group ([`crate::handlers::OnJournalEvents`]),
//! and `orderctl replay --projection order-journal` rebuilds it from the
//! topics into [`Table::Next`] and swaps the two tables ([`swap`]).
//!
//! A row is a function of its record alone (no "projected at" time), so a
//! journal rebuilt from the log equals the live one, and writing a row
//! twice keeps the first: a replay repeated changes nothing.
//!
//! Its statements are runtime `sqlx::query*`, not `query!`: they name the
//! table a rebuild chose ([`Table`]) at run time, and [`swap`] renames the
//! tables under them.

use chrono::{DateTime, Utc};
use orderflow_events::inbox::Origin;
use orderflow_events::Envelope;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// One of the journal's two tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `order_journal`: what the API and the live projection use.
    Live,
    /// `order_journal_next`: where a rebuild writes before the swap.
    Next,
}

impl Table {
    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Live => "order_journal",
            Table::Next => "order_journal_next",
        }
    }
}

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalRow {
    /// The event's id.
    pub event_id: Uuid,
    /// Its saga (the order id for an order's events).
    pub correlation_id: String,
    /// The event that caused it.
    pub causation_id: Option<Uuid>,
    /// Its type, e.g. `PaymentProcessed`.
    pub event_type: String,
    /// Its payload schema version.
    pub event_version: i32,
    /// The service that emitted it.
    pub source: String,
    /// When it happened (the envelope's timestamp).
    pub occurred_at: DateTime<Utc>,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub kafka_partition: i32,
    /// Its offset.
    pub kafka_offset: i64,
    /// The record's key.
    pub record_key: Option<String>,
}

impl JournalRow {
    /// The row of `envelope`, read at `origin` with `key`.
    pub fn new(envelope: &Envelope, origin: &Origin, key: Option<&str>) -> Self {
        Self {
            event_id: envelope.event_id,
            correlation_id: envelope.correlation_id.clone(),
            causation_id: envelope.causation_id,
            event_type: envelope.event_type().name().to_owned(),
            event_version: envelope.event_version,
            source: envelope.source.clone(),
            occurred_at: envelope.timestamp,
            topic: origin.topic.clone(),
            kafka_partition: origin.partition,
            kafka_offset: origin.offset,
            record_key: key.map(str::to_owned),
        }
    }
}

/// The journal's columns, in the order both tables have them.
const COLUMNS: &str = "event_id, correlation_id, causation_id, event_type, event_version, \
                       source, occurred_at, topic, kafka_partition, kafka_offset, record_key";

/// Writes `rows` to `table` in one statement; an event already there keeps
/// its row. Returns the ids of the rows that were new.
pub async fn insert(
    conn: &mut PgConnection,
    table: Table,
    rows: &[JournalRow],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut cols = Columns::default();
    for r in rows {
        cols.push(r);
    }
    let sql = format!(
        "INSERT INTO {} ({COLUMNS}) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::int[], \
         $6::text[], $7::timestamptz[], $8::text[], $9::int[], $10::bigint[], $11::text[]) \
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        table.name()
    );
    sqlx::query_scalar(&sql)
        .bind(cols.event_ids)
        .bind(cols.correlation_ids)
        .bind(cols.causation_ids)
        .bind(cols.event_types)
        .bind(cols.event_versions)
        .bind(cols.sources)
        .bind(cols.occurred_at)
        .bind(cols.topics)
        .bind(cols.partitions)
        .bind(cols.offsets)
        .bind(cols.keys)
        .fetch_all(conn)
        .await
}

/// Rows as one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    event_ids: Vec<Uuid>,
    correlation_ids: Vec<String>,
    causation_ids: Vec<Option<Uuid>>,
    event_types: Vec<String>,
    event_versions: Vec<i32>,
    sources: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    topics: Vec<String>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    keys: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, r: &JournalRow) {
        self.event_ids.push(r.event_id);
        self.correlation_ids.push(r.correlation_id.clone());
        self.causation_ids.push(r.causation_id);
        self.event_types.push(r.event_type.clone());
        self.event_versions.push(r.event_version);
        self.sources.push(r.source.clone());
        self.occurred_at.push(r.occurred_at);
        self.topics.push(r.topic.clone());
        self.partitions.push(r.kafka_partition);
        self.offsets.push(r.kafka_offset);
        self.keys.push(r.record_key.clone());
    }
}

/// Every row of `table`, in (correlation id, time, event id) order.
pub async fn all(conn: &mut PgConnection, table: Table) -> Result<Vec<JournalRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} ORDER BY correlation_id, occurred_at, event_id",
        table.name()
    );
    sqlx::query_as(&sql).fetch_all(conn).await
}

/// The rows of one saga in the live journal, oldest first.
pub async fn of_correlation(
    conn: &mut PgConnection,
    correlation_id: &str,
) -> Result<Vec<JournalRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM order_journal WHERE correlation_id = $1 \
         ORDER BY occurred_at, event_id"
    );
    sqlx::query_as(&sql)
        .bind(correlation_id)
        .fetch_all(conn)
        .await
}

/// The part of one partition a rebuild read: offsets `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// One past the last offset read (the partition's end when the read
    /// started).
    pub end: i64,
}

/// What a rebuild replayed: these ranges, and of them only the events of
/// one saga when `correlation_id` is set. The rows of the live journal
/// outside it are carried over at the swap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The ranges read.
    pub ranges: Vec<Range>,
    /// Only this saga's events.
    pub correlation_id: Option<String>,
}

/// Key of the advisory lock a rebuild holds on its connection, so two
/// rebuilds never write `order_journal_next` at once.
const REBUILD_LOCK: i64 = 0x6f72_6465_726a_6e6c; // "orderjnl"

/// Starts a rebuild on `conn`: takes the rebuild lock for the connection's
/// lifetime (`false` when another rebuild holds it) and empties
/// [`Table::Next`]. Needs the tables' owner (the role that runs the
/// migrations).
pub async fn begin_rebuild(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if locked {
        sqlx::query("TRUNCATE order_journal_next")
            .execute(&mut *conn)
            .await?;
    }
    Ok(locked)
}

/// What [`swap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swapped {
    /// Rows carried over from the live journal (outside the scope, or
    /// projected after the rebuild's read started).
    pub kept: u64,
    /// Rows of the journal after the swap.
    pub rows: i64,
}

/// Makes the rebuilt [`Table::Next`] the live journal, in one transaction:
/// locks both tables (the live projection waits), copies the live rows
/// outside `scope` (events of other sagas, or past the rebuild's read) that
/// the rebuild does not have, exchanges the tables' names (and their
/// indexes'), and empties the old table, now `order_journal_next`.
pub async fn swap(conn: &mut PgConnection, scope: &Scope) -> Result<Swapped, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("LOCK TABLE order_journal, order_journal_next IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let topics: Vec<&str> = scope.ranges.iter().map(|r| r.topic.as_str()).collect();
    let partitions: Vec<i32> = scope.ranges.iter().map(|r| r.partition).collect();
    let starts: Vec<i64> = scope.ranges.iter().map(|r| r.start).collect();
    let ends: Vec<i64> = scope.ranges.iter().map(|r| r.end).collect();
    let copy = format!(
        "INSERT INTO order_journal_next ({COLUMNS}) SELECT {COLUMNS} FROM order_journal j \
         WHERE NOT EXISTS (SELECT 1 FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[]) \
                AS r(topic, part, start_at, end_at) \
                WHERE r.topic = j.topic AND r.part = j.kafka_partition \
                  AND j.kafka_offset >= r.start_at AND j.kafka_offset < r.end_at) \
            OR ($5::text IS NOT NULL AND j.correlation_id <> $5) \
         ON CONFLICT (event_id) DO NOTHING"
    );
    let kept = sqlx::query(&copy)
        .bind(topics)
        .bind(partitions)
        .bind(starts)
        .bind(ends)
        .bind(scope.correlation_id.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for statement in [
        "ALTER TABLE order_journal RENAME TO order_journal_swap",
        "ALTER TABLE order_journal_next RENAME TO order_journal",
        "ALTER TABLE order_journal_swap RENAME TO order_journal_next",
        "ALTER INDEX order_journal_pkey RENAME TO order_journal_swap_pkey",
        "ALTER INDEX order_journal_next_pkey RENAME TO order_journal_pkey",
        "ALTER INDEX order_journal_swap_pkey RENAME TO order_journal_next_pkey",
        "ALTER INDEX order_journal_correlation_idx RENAME TO order_journal_swap_correlation_idx",
        "ALTER INDEX order_journal_next_correlation_idx RENAME TO order_journal_correlation_idx",
        "ALTER INDEX order_journal_swap_correlation_idx RENAME TO order_journal_next_correlation_idx",
        "TRUNCATE order_journal_next",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_journal")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Swapped { kept, rows })
}

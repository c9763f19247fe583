//! The transactional outbox: an event is written to the `outbox` table in
//! the caller's database transaction, so it commits if and only if the state
//! change that produced it commits. The [`relay`](crate::relay) publishes it.
//! Rows it cannot encode are set aside in `outbox_failed` ([`failed`]).

pub mod failed;

use sqlx::PgConnection;

use crate::envelope::Envelope;
use crate::error::OutboxError;
use crate::topics::TopicCatalog;
use crate::trace_context::TraceContext;

/// The `NOTIFY` channel the relay listens on.
pub const NOTIFY_CHANNEL: &str = "orderflow_outbox";

/// Headers stored with an outbox row and sent as Kafka headers.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StoredHeaders {
    /// Trace context of the operation that wrote the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// Adds `envelope` to the outbox inside the caller's transaction, keyed by
/// `key` (the aggregate id, e.g. the order id, so one aggregate's events stay
/// in order on one partition). The topic comes from the event's stream in
/// `topics`. The relay is woken when the transaction commits (a trigger on
/// the table notifies [`NOTIFY_CHANNEL`]).
///
/// The stored trace context is the current span's when OpenTelemetry is
/// active (the HTTP request or consumer span the event is written in, so
/// the relay's publish span becomes its child); otherwise `trace`.
pub async fn enqueue(
    conn: &mut PgConnection,
    topics: &TopicCatalog,
    key: &str,
    envelope: &Envelope,
    trace: Option<&TraceContext>,
) -> Result<(), OutboxError> {
    let mut rows = Rows::default();
    rows.push(topics, key, envelope, trace)?;
    rows.insert(conn).await
}

/// Outbox rows to write as part of a larger statement, so a state change
/// and its events take one round trip: [`query_queueing!`] puts them in the
/// statement's `WITH` as parameters `$1` to `$6`.
#[derive(Debug, Default)]
pub struct Rows {
    event_ids: Vec<uuid::Uuid>,
    event_types: Vec<&'static str>,
    topics: Vec<String>,
    keys: Vec<String>,
    envelopes: Vec<serde_json::Value>,
    headers: Vec<serde_json::Value>,
}

impl Rows {
    /// Adds `envelope` keyed by `key`, as [`enqueue`] would.
    pub fn push(
        &mut self,
        topics: &TopicCatalog,
        key: &str,
        envelope: &Envelope,
        trace: Option<&TraceContext>,
    ) -> Result<(), OutboxError> {
        let headers = serde_json::to_value(StoredHeaders {
            trace: TraceContext::current().or_else(|| trace.cloned()),
        })
        .map_err(crate::error::CodecError::from)?;
        self.envelopes.push(envelope.to_json()?);
        self.headers.push(headers);
        self.event_ids.push(envelope.event_id);
        self.event_types.push(envelope.event_type().name());
        self.topics
            .push(topics.topic(envelope.event_type().stream()).to_owned());
        self.keys.push(key.to_owned());
        Ok(())
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.event_ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.event_ids.is_empty()
    }

    /// The ids of the events, in the order they were added.
    pub fn event_ids(&self) -> &[uuid::Uuid] {
        &self.event_ids
    }

    /// The rows' columns, in the order [`query_queueing!`] binds them as
    /// `$1` to `$6`: event ids, event types, topics, keys, envelopes,
    /// headers.
    #[allow(clippy::type_complexity)]
    pub fn columns(
        &self,
    ) -> (
        &[uuid::Uuid],
        &[&'static str],
        &[String],
        &[String],
        &[serde_json::Value],
        &[serde_json::Value],
    ) {
        (
            &self.event_ids,
            &self.event_types,
            &self.topics,
            &self.keys,
            &self.envelopes,
            &self.headers,
        )
    }

    /// Writes the rows to the outbox on their own (one statement).
    pub async fn insert(&self, conn: &mut PgConnection) -> Result<(), OutboxError> {
        crate::query_queueing!(when: "true", then: "SELECT", rows: self)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Number of events not yet published, and the age in seconds of the oldest.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "count!",
             COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) AS "age!"
           FROM outbox"#
    )
    .fetch_one(conn)
    .await?;
    Ok((r.count, r.age))
}

/// `sqlx::query!` of a statement that changes state and queues [`Rows`] in
/// the same round trip, checked at compile time against the caller's
/// database like any other `query!` (its data in the caller's `.sqlx/`).
///
/// ```ignore
/// orderflow_events::query_queueing!(
///     with: "paid AS (INSERT INTO payments … VALUES ($7, $8) … RETURNING order_id)",
///     when: "e.partition_key IN (SELECT order_id FROM paid)",
///     then: "SELECT order_id AS \"order_id!\" FROM paid",
///     rows: &events,
///     order_id, amount,
/// )
/// ```
///
/// The statement is `WITH <with>, queued AS (INSERT INTO outbox … WHERE
/// <when>) <then>` (`with:` may be left out): `with` holds the statement's
/// own `WITH` items, `when`
/// says which rows are queued (it may name `e.event_id`, `e.event_type`,
/// `e.topic`, `e.partition_key`, `e.envelope`, `e.headers` and the `with`
/// items; `true` for all), and `then` is the final statement. The rows are
/// parameters `$1` to `$6`; the statement's own arguments follow `rows`
/// and are numbered from `$7`. Each of `with`, `when` and `then` must be a
/// string literal (the macro needs the whole statement as text).
#[macro_export]
macro_rules! query_queueing {
    (with: $with:tt, when: $when:tt, then: $then:tt, rows: $rows:expr $(, $arg:expr)* $(,)?) => {
        $crate::query_queueing!(@sql ("WITH " + $with + ", "), $when, $then, $rows, [$(, $arg)*])
    };
    (when: $when:tt, then: $then:tt, rows: $rows:expr $(, $arg:expr)* $(,)?) => {
        $crate::query_queueing!(@sql ("WITH "), $when, $then, $rows, [$(, $arg)*])
    };
    (@sql ($($head:tt)+), $when:tt, $then:tt, $rows:expr, [$($arg:tt)*]) => {{
        let (ids, types, topics, keys, envelopes, headers) = $crate::outbox::Rows::columns($rows);
        ::sqlx::query!(
            $($head)+ + "queued AS (INSERT INTO outbox \
             (event_id, event_type, topic, partition_key, envelope, headers) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[]) \
             AS e(event_id, event_type, topic, partition_key, envelope, headers) WHERE " + $when + ") " + $then,
            ids,
            types as &[&str],
            topics,
            keys,
            envelopes,
            headers
            $($arg)*
        )
    }};
}

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
/// and its events take one round trip: put [`Rows::cte`] in the statement's
/// `WITH` and bind the rows with [`Rows::bind`] where its parameters are.
#[derive(Debug, Default)]
pub struct Rows {
    event_ids: Vec<uuid::Uuid>,
    event_types: Vec<&'static str>,
    topics: Vec<String>,
    keys: Vec<String>,
    envelopes: Vec<serde_json::Value>,
    headers: Vec<serde_json::Value>,
}

/// Parameters [`Rows::cte`] takes.
pub const ROWS_PARAMS: usize = 6;

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

    /// `name AS (INSERT INTO outbox …)`: a `WITH` item inserting the rows
    /// bound as parameters `$first` to `$first + 5` ([`ROWS_PARAMS`]), in
    /// order. With no rows it inserts nothing.
    pub fn cte(name: &str, first: usize) -> String {
        Self::cte_when(name, first, "true")
    }

    /// As [`Rows::cte`], inserting the rows only when the SQL `condition`
    /// holds (e.g. `EXISTS (SELECT 1 FROM created)` after another `WITH`
    /// item that may insert nothing). The condition may name the row's
    /// columns as `e.event_id`, `e.event_type`, `e.topic`,
    /// `e.partition_key`, `e.envelope` and `e.headers`, e.g.
    /// `e.partition_key IN (SELECT order_id FROM created)`.
    pub fn cte_when(name: &str, first: usize, condition: &str) -> String {
        let p: Vec<String> = (first..first + ROWS_PARAMS)
            .map(|i| format!("${i}"))
            .collect();
        format!(
            "{name} AS (INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope, headers) \
             SELECT * FROM unnest({}::uuid[], {}::text[], {}::text[], {}::text[], {}::jsonb[], {}::jsonb[]) \
             AS e(event_id, event_type, topic, partition_key, envelope, headers) WHERE {condition})",
            p[0], p[1], p[2], p[3], p[4], p[5]
        )
    }

    /// Writes the rows to the outbox on their own (one statement).
    pub async fn insert(&self, conn: &mut PgConnection) -> Result<(), OutboxError> {
        static SQL: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| format!("WITH {} SELECT 1", Rows::cte("queued", 1)));
        self.bind(sqlx::query(SQL.as_str()))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Binds the rows as the next [`ROWS_PARAMS`] parameters of `query`.
    pub fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.event_ids)
            .bind(&self.event_types)
            .bind(&self.topics)
            .bind(&self.keys)
            .bind(&self.envelopes)
            .bind(&self.headers)
    }
}

/// Number of events not yet published, and the age in seconds of the oldest.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM outbox",
    )
    .fetch_one(conn)
    .await
}

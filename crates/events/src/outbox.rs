//! The transactional outbox: an event is written to the `outbox` table in
//! the caller's database transaction, so it commits if and only if the state
//! change that produced it commits. The [`relay`](crate::relay) publishes it.

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
/// `topics`. The relay is woken when the transaction commits.
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
    let topic = topics.topic(envelope.event_type().stream());
    let headers = serde_json::to_value(StoredHeaders {
        trace: TraceContext::current().or_else(|| trace.cloned()),
    })
    .map_err(crate::error::CodecError::from)?;
    // The notification is delivered at commit (identical ones in one
    // transaction fold into one); sent with the insert, in one round trip.
    sqlx::query(
        "WITH queued AS (INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope, headers) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) \
         SELECT pg_notify($7, '') FROM queued",
    )
    .bind(envelope.event_id)
    .bind(envelope.event_type().name())
    .bind(topic)
    .bind(key)
    .bind(envelope.to_json()?)
    .bind(headers)
    .bind(NOTIFY_CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Number of events not yet published, and the age in seconds of the oldest.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM outbox",
    )
    .fetch_one(conn)
    .await
}

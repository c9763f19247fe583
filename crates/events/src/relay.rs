//! The outbox relay: publishes outbox rows to Kafka in `id` order and
//! deletes them once the broker acknowledged them.
//!
//! - One relay per database is active at a time (a session advisory lock),
//!   so events of one key are never published out of order by two replicas.
//! - Rows go out in batches, several in flight: the next batch is read,
//!   encoded and sent while the broker acknowledges the earlier ones, and
//!   batches are settled in the order they were sent. One producer sends
//!   them all, so each partition keeps the outbox order. A row is deleted
//!   only when it and every earlier row of the same key were acknowledged.
//!   After a failed delivery no new batch is sent until those in flight are
//!   settled; then the relay retries from the oldest row left. A crash
//!   anywhere re-publishes, never loses: consumers drop the duplicates
//!   through their inbox.
//! - Broker or registry outages make the relay back off and retry; writers
//!   are unaffected because they only insert rows.
//! - It wakes on `NOTIFY` from [`outbox::enqueue`](crate::outbox::enqueue)
//!   and also polls, in case a notification is missed.
//! - Each record gets a producer span `publish <topic>`, a child of the trace
//!   context stored with the row; the record's `traceparent` header carries
//!   that span's context (the stored one when OpenTelemetry is not active).
//!   Acknowledged records count towards `orderflow_events_published_total`.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::DeliveryFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Postgres, Row};
use tokio_util::sync::CancellationToken;

use crate::codec::AvroCodec;
use crate::envelope::Envelope;
use crate::error::{CodecError, RunError};
use crate::kafka::{EventProducer, KafkaConfig, OutgoingRecord};
use crate::outbox::{StoredHeaders, NOTIFY_CHANNEL};
use crate::trace_context::TraceContext;

/// Advisory lock key held by the active relay of a database.
const LEADER_LOCK: i64 = 0x6f75_7462_6f78; // "outbox"

/// Where a test may stop the relay, as if the process were killed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After reading a batch, before producing it.
    BeforePublish,
    /// After the broker acknowledged a batch, before deleting its rows.
    AfterPublish,
}

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows per batch.
    pub batch_size: i64,
    /// Batches sent and not yet settled, at most (1: each batch waits for
    /// the previous one's acknowledgements).
    pub max_in_flight_batches: usize,
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// First retry delay after a failure.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Test hook: stop at this point of the first batch.
    pub crash_at: Option<CrashPoint>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_in_flight_batches: 3,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            crash_at: None,
        }
    }
}

/// Publishes the outbox of one database.
pub struct Relay {
    pool: PgPool,
    kafka: KafkaConfig,
    producer: EventProducer,
    codec: Arc<AvroCodec>,
    opts: RelayOptions,
}

struct Row_ {
    id: i64,
    key: String,
    record: Option<Prepared>,
}

/// A batch handed to the producer, not yet settled.
struct InFlight {
    rows: Vec<Row_>,
    /// Per row: its span and delivery, `None` for a row that cannot be
    /// encoded.
    sends: Vec<
        Option<(
            tracing::Span,
            Result<DeliveryFuture, rdkafka::error::KafkaError>,
        )>,
    >,
    /// Rows that cannot be encoded, with the reason.
    broken: Vec<(i64, String)>,
}

/// The batches in flight, oldest first, and what went wrong since the
/// pipeline was last empty.
#[derive(Default)]
struct Pipeline {
    in_flight: VecDeque<InFlight>,
    /// Keys with a record the broker did not acknowledge: their later rows
    /// stay in the outbox until it is.
    failed_keys: HashSet<String>,
    /// Records not acknowledged, or held back behind one of their key.
    failed: usize,
    /// Stops sending: returned once the batches in flight are settled.
    error: Option<BatchError>,
}

impl Pipeline {
    fn in_flight_ids(&self) -> Vec<i64> {
        self.in_flight
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.id))
            .collect()
    }
}

/// An encoded row waiting for its span and headers.
struct Prepared {
    envelope: Envelope,
    topic: String,
    payload: Vec<u8>,
    trace: Option<TraceContext>,
}

impl Relay {
    /// Builds a relay with its own producer.
    pub fn new(
        pool: PgPool,
        kafka: &KafkaConfig,
        codec: Arc<AvroCodec>,
        opts: RelayOptions,
    ) -> Result<Self, RunError> {
        let producer = EventProducer::new(kafka)?;
        Ok(Self {
            pool,
            kafka: kafka.clone(),
            producer,
            codec,
            opts,
        })
    }

    /// Runs until `shutdown` is cancelled, then flushes the producer.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), RunError> {
        let mut listener = self.listen().await;
        let mut backoff = self.opts.min_backoff;
        let mut leader: Option<PoolConnection<Postgres>> = None;
        let mut pipe = Pipeline::default();
        while !shutdown.is_cancelled() {
            if leader.is_none() {
                leader = self.try_lead().await;
                if leader.is_none() {
                    wait(&shutdown, &mut listener, self.opts.poll_interval).await;
                    continue;
                }
                tracing::info!("outbox relay is the active publisher");
            }
            let conn = leader.as_mut().expect("leader connection checked above");
            let stepped = self.step(conn, &mut pipe).await;
            if stepped.is_err() {
                // Deliveries still in flight (a database error or a crash)
                // resolve on their own; their rows stay in the outbox and
                // are sent again.
                pipe = Pipeline::default();
            }
            match stepped {
                Ok(busy) => {
                    backoff = self.opts.min_backoff;
                    if !busy {
                        wait(&shutdown, &mut listener, self.opts.poll_interval).await;
                    }
                }
                Err(BatchError::Crash(point)) => {
                    // As if the process died: its connection, and so the
                    // leader lock, goes away.
                    release(leader.take()).await;
                    return Err(RunError::SimulatedCrash(point));
                }
                Err(BatchError::Database(e)) => {
                    tracing::warn!(error = %e, "outbox relay database error; retrying");
                    release(leader.take()).await;
                    sleep_or_cancel(&shutdown, backoff).await;
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                }
                Err(BatchError::Encode(msg)) => {
                    tracing::warn!(error = %msg, retry_in_ms = backoff.as_millis() as u64, "outbox relay could not encode (registry unavailable); retrying");
                    sleep_or_cancel(&shutdown, backoff).await;
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                }
                Err(BatchError::Publish(msg)) => {
                    tracing::warn!(error = %msg, retry_in_ms = backoff.as_millis() as u64, "outbox relay could not publish; retrying");
                    if let Some(fatal) = self.producer.fatal_error() {
                        tracing::warn!(%fatal, "the producer hit a fatal error");
                    }
                    // Retry with a fresh producer (new producer id). After
                    // in-flight records time out, librdkafka's idempotent
                    // producer bumps its epoch, which tansu 0.6 cannot handle
                    // (its storage panics and the broker stops accepting
                    // records) and a fatal error needs a new producer anyway.
                    // Every batch in flight was settled before this error,
                    // so nothing is left in flight in the old one. Dropping it
                    // blocks (purge + flush + destroy): not on this task.
                    let old =
                        std::mem::replace(&mut self.producer, EventProducer::new(&self.kafka)?);
                    tokio::task::spawn_blocking(move || drop(old));
                    sleep_or_cancel(&shutdown, backoff).await;
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                }
            }
        }
        // Settle what is in flight, so its rows are not published again by
        // the next relay. Each delivery resolves within the message timeout.
        if let Some(conn) = leader.as_mut() {
            while let Some(batch) = pipe.in_flight.pop_front() {
                if self.settle(conn, batch, &mut pipe).await.is_err() {
                    break;
                }
            }
        }
        release(leader.take()).await;
        // Flushing and destroying the producer block (up to the timeout when
        // the broker is gone): not on an async worker.
        let producer = self.producer;
        let flushed = tokio::task::spawn_blocking(move || {
            let r = producer.flush(Duration::from_secs(5));
            drop(producer);
            r
        })
        .await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "producer flush on shutdown failed; unacknowledged rows stay in the outbox");
        }
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = PgListener::connect_with(&self.pool).await.ok()?;
        l.listen(NOTIFY_CHANNEL).await.ok()?;
        Some(l)
    }

    async fn try_lead(&self) -> Option<PoolConnection<Postgres>> {
        let mut conn = self.pool.acquire().await.ok()?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *conn)
            .await
            .ok()?;
        // Without the lock, the connection goes back to the pool; with it, the
        // relay keeps it: closing it releases the lock.
        got.then_some(conn)
    }

    /// One step of the pipeline: sends the next batch unless the window is
    /// full, otherwise (or when nothing new is waiting) settles the oldest
    /// batch in flight. `Ok(false)` when there was nothing to do.
    async fn step(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        pipe: &mut Pipeline,
    ) -> Result<bool, BatchError> {
        if pipe.error.is_none() && pipe.in_flight.len() < self.opts.max_in_flight_batches {
            match self.send_next(conn, pipe).await {
                Ok(Some(batch)) => {
                    pipe.in_flight.push_back(batch);
                    if pipe.in_flight.len() < self.opts.max_in_flight_batches {
                        return Ok(true);
                    }
                }
                Ok(None) => {}
                // Nothing of this batch was sent: settle what was before
                // returning the error.
                Err(e @ BatchError::Encode(_)) => pipe.error = Some(e),
                Err(e) => return Err(e),
            }
        }
        match pipe.in_flight.pop_front() {
            Some(oldest) => {
                self.settle(conn, oldest, pipe).await?;
                Ok(true)
            }
            None => match pipe.error.take() {
                Some(BatchError::Publish(e)) => Err(BatchError::Publish(format!(
                    "{} records not acknowledged or held back behind one of their key: {e}",
                    pipe.failed
                ))),
                Some(e) => Err(e),
                None => Ok(false),
            },
        }
    }

    /// Reads the oldest rows not in flight, encodes them and hands them to
    /// the producer; `None` when there are none.
    async fn send_next(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        pipe: &Pipeline,
    ) -> Result<Option<InFlight>, BatchError> {
        // Rows in flight are skipped by id, not by a cursor: a row whose
        // transaction committed late has a lower id than rows already sent
        // and must not wait until the pipeline drains. Planned on every call
        // so the planner sees the array (a hashed lookup, not a scan of it).
        let rows = sqlx::query(
            "SELECT id, event_id, topic, partition_key, envelope, headers FROM outbox \
             WHERE id <> ALL($2) ORDER BY id LIMIT $1",
        )
        .persistent(false)
        .bind(self.opts.batch_size)
        .bind(pipe.in_flight_ids())
        .fetch_all(&mut **conn)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut batch = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        for row in rows {
            let id: i64 = row.get("id");
            let key: String = row.get("partition_key");
            match self.to_record(&row).await {
                Ok(record) => batch.push(Row_ {
                    id,
                    key,
                    record: Some(record),
                }),
                Err(e) if e.is_transient() => return Err(BatchError::Encode(e.to_string())),
                Err(e) => {
                    tracing::error!(outbox_id = id, error = %e, "outbox row cannot be encoded; moved to outbox_failed");
                    broken.push((id, e.to_string()));
                    batch.push(Row_ {
                        id,
                        key,
                        record: None,
                    });
                }
            }
        }
        if self.opts.crash_at == Some(CrashPoint::BeforePublish) {
            return Err(BatchError::Crash("before publish"));
        }
        let now = chrono::Utc::now();
        let sends = batch
            .iter()
            .map(|r| {
                r.record.as_ref().map(|p| {
                    let waited = (now - p.envelope.timestamp).to_std().unwrap_or_default();
                    crate::metrics::pipeline().relay_delay(&p.topic, waited);
                    let (span, record) = publish_span(&r.key, p);
                    (span, self.producer.send(&record))
                })
            })
            .collect();
        Ok(Some(InFlight {
            rows: batch,
            sends,
            broken,
        }))
    }

    /// Awaits a batch's deliveries and deletes the rows that are done.
    async fn settle(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        batch: InFlight,
        pipe: &mut Pipeline,
    ) -> Result<(), BatchError> {
        let InFlight {
            rows,
            sends,
            broken,
        } = batch;
        let mut done = Vec::with_capacity(rows.len());
        for (r, send) in rows.iter().zip(sends) {
            let outcome = match send {
                None => Ok(()),
                Some((span, sent)) => {
                    let outcome = delivered(sent).await;
                    match &outcome {
                        Ok((partition, offset)) => {
                            span.record("messaging.destination.partition.id", partition);
                            span.record("messaging.kafka.offset", offset);
                            if let Some(p) = &r.record {
                                crate::metrics::pipeline()
                                    .published(&p.topic, p.envelope.event_type().name());
                            }
                        }
                        Err(e) => {
                            span.record("otel.status_code", "ERROR");
                            span.record("error.type", "publish_failed");
                            span.in_scope(|| tracing::debug!(error = %e, "publish failed"));
                        }
                    }
                    outcome.map(|_| ())
                }
            };
            match outcome {
                // Only a prefix of each key's rows is done: a later row, in
                // this batch or a later one, must not be marked while an
                // earlier one of its key is retried.
                Ok(()) if !pipe.failed_keys.contains(&r.key) => done.push(r.id),
                Ok(()) => pipe.failed += 1,
                Err(e) => {
                    pipe.failed += 1;
                    pipe.failed_keys.insert(r.key.clone());
                    if !matches!(pipe.error, Some(BatchError::Publish(_))) {
                        pipe.error = Some(BatchError::Publish(e));
                    }
                }
            }
        }
        if self.opts.crash_at == Some(CrashPoint::AfterPublish) {
            return Err(BatchError::Crash("after publish"));
        }
        let mut tx = sqlx::Acquire::begin(&mut **conn).await?;
        // A broken row stays in the outbox (like any row) while an earlier
        // row of its key is retried; it is moved only together with its
        // deletion, or the next attempt would insert it into outbox_failed
        // again and fail on its primary key, forever.
        for (id, reason) in broken.iter().filter(|(id, _)| done.contains(id)) {
            sqlx::query(
                "INSERT INTO outbox_failed (id, event_id, event_type, topic, partition_key, envelope, headers, created_at, reason) \
                 SELECT id, event_id, event_type, topic, partition_key, envelope, headers, created_at, $2 FROM outbox WHERE id = $1",
            )
            .bind(id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        // Planned on every call: a generic plan for `= ANY($1)` made while
        // the outbox was nearly empty scans the whole table.
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .persistent(false)
            .bind(&done)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn to_record(&self, row: &sqlx::postgres::PgRow) -> Result<Prepared, CodecError> {
        let envelope = Envelope::from_json(row.get("envelope"))?;
        let stored: StoredHeaders = serde_json::from_value(row.get("headers"))?;
        let topic: String = row.get("topic");
        let payload = self.codec.encode(&topic, &envelope).await?;
        Ok(Prepared {
            envelope,
            topic,
            payload,
            trace: stored.trace,
        })
    }
}

/// The producer span of one record (a child of the row's stored trace
/// context) and the record, whose trace headers carry the span's context.
fn publish_span(key: &str, p: &Prepared) -> (tracing::Span, OutgoingRecord) {
    let span = tracing::info_span!(
        "publish",
        otel.name = format!("publish {}", p.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "publish",
        messaging.destination.name = %p.topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.message.key = %key,
        messaging.kafka.offset = tracing::field::Empty,
        messaging.message.id = %p.envelope.event_id,
        event_type = p.envelope.event_type().name(),
        correlation_id = %p.envelope.correlation_id,
    );
    if let Some(t) = &p.trace {
        t.set_as_parent_of(&span);
    }
    let trace = TraceContext::of_span(&span).or_else(|| p.trace.clone());
    let record = OutgoingRecord {
        topic: p.topic.clone(),
        key: key.to_owned(),
        payload: p.payload.clone(),
        headers: record_headers(&p.envelope, trace.as_ref()),
    };
    (span, record)
}

/// Waits for the broker's answer; `(partition, offset)` on success.
async fn delivered(
    sent: Result<DeliveryFuture, rdkafka::error::KafkaError>,
) -> Result<(i32, i64), String> {
    match sent {
        Err(e) => Err(e.to_string()),
        Ok(f) => match f.await {
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((e, _))) => Err(e.to_string()),
            Err(_) => Err("delivery canceled".to_owned()),
        },
    }
}

/// The Kafka headers of a published event: trace context plus the envelope
/// fields consumers most often filter on, so they need not decode to route.
pub fn record_headers(
    envelope: &Envelope,
    trace: Option<&crate::trace_context::TraceContext>,
) -> OwnedHeaders {
    let event_id = envelope.event_id.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "eventType",
            value: Some(envelope.event_type().name()),
        })
        .insert(Header {
            key: "eventId",
            value: Some(&event_id),
        })
        .insert(Header {
            key: "correlationId",
            value: Some(&envelope.correlation_id),
        });
    match trace {
        Some(t) => t.inject(headers),
        None => headers,
    }
}

/// Closes the leader connection (never returns it to the pool), which
/// releases the session advisory lock.
async fn release(conn: Option<PoolConnection<Postgres>>) {
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

enum BatchError {
    Database(sqlx::Error),
    /// The registry is unavailable: nothing was sent.
    Encode(String),
    /// Some records were not acknowledged.
    Publish(String),
    Crash(&'static str),
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        BatchError::Database(e)
    }
}

async fn wait(shutdown: &CancellationToken, listener: &mut Option<PgListener>, poll: Duration) {
    match listener {
        Some(l) => {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(poll) => {}
                r = l.recv() => if let Err(e) = r {
                    tracing::debug!(error = %e, "outbox listener error; polling until it reconnects");
                    sleep_or_cancel(shutdown, poll).await;
                },
            }
        }
        None => sleep_or_cancel(shutdown, poll).await,
    }
}

async fn sleep_or_cancel(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

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
//!   A row is not sent while a row of its topic and key is in an earlier
//!   batch not yet settled (`pipeline.rs`): a later record of a key must
//!   never reach the broker after an earlier one failed.
//!   After a failed delivery no new batch is sent until those in flight are
//!   settled; then the relay retries from the oldest row left. A crash
//!   anywhere re-publishes, never loses: consumers drop the duplicates
//!   through their inbox.
//! - Broker or registry outages make the relay back off and retry; writers
//!   are unaffected because they only insert rows.
//! - It wakes on `NOTIFY` from [`outbox::enqueue`](crate::outbox::enqueue)
//!   and also polls, in case a notification is missed. After a read finds
//!   less than a batch it reads again only when notified (or at the poll),
//!   also while batches are in flight. A settled batch's rows are deleted
//!   by the next read, in its statement (`WITH … DELETE`), or in one
//!   `DELETE` of their own, without a transaction around it, before the
//!   relay waits with nothing in flight (or once a batch's worth is
//!   waiting); both statements are prepared once on the leader's session,
//!   which plans each execution with its parameters. A wake-up for one row
//!   costs its database two round trips (read, delete) when the relay then
//!   waits, one when another read follows.
//! - Each record gets a producer span `publish <topic>`, a child of the trace
//!   context stored with the row; the record's `traceparent` header carries
//!   that span's context (the stored one when OpenTelemetry is not active).
//!   Acknowledged records count towards `orderflow_events_published_total`.
//!
//! This module holds the relay's loop and leadership; [`pipeline`] the
//! batches in flight (read, encode, send, settle); [`record`] each record's
//! span and headers.

mod pipeline;
mod record;

use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::Postgres;
use tokio_util::sync::CancellationToken;

use crate::codec::AvroCodec;
use crate::error::RunError;
use crate::kafka::{EventProducer, KafkaConfig};
use crate::outbox::NOTIFY_CHANNEL;
use pipeline::{BatchError, Pipeline};

pub use record::record_headers;

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
            max_in_flight_batches: 16,
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
            let stepped = self.step(conn, &mut pipe, &mut listener).await;
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
                        // Woken by a notification, or the poll in case one
                        // was missed: read again either way.
                        pipe.drained = false;
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
            let _ = self.delete_acknowledged(conn, &mut pipe).await;
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
        // With the lock, the session also plans every execution of a
        // prepared statement with its parameters: the relay's statements
        // take arrays of ids, whose generic plan (made once, e.g. while the
        // outbox was empty) may scan the whole table. Prepared once, each
        // read and delete is one round trip; an unnamed statement planned
        // anew costs two. Set only with the lock, in the same statement:
        // without it the connection goes back to the pool as it was; with
        // it, the relay keeps it, and closing it releases the lock.
        let got = sqlx::query_scalar!(
            r#"SELECT CASE WHEN pg_try_advisory_lock($1)
                      THEN set_config('plan_cache_mode', 'force_custom_plan', false) IS NOT NULL
                      ELSE false END AS "got!""#,
            LEADER_LOCK
        )
        .fetch_one(&mut *conn)
        .await
        .ok()?;
        got.then_some(conn)
    }
}

/// Closes the leader connection (never returns it to the pool), which
/// releases the session advisory lock.
async fn release(conn: Option<PoolConnection<Postgres>>) {
    if let Some(c) = conn {
        let _ = c.close().await;
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

//! The consumer helper: subscribe, decode, dispatch by event type, apply
//! each event exactly once per consumer group, and never lose one.
//!
//! - Records of one partition are processed strictly in order by one worker
//!   task; partitions run in parallel (or share a few workers per topic:
//!   [`ConsumerOptions::workers_per_topic`]). Optionally
//!   ([`ConsumerOptions::lanes_per_worker`]) a worker's records are split
//!   by key over several concurrent lanes: each key's records stay in
//!   order, and the offset advances only past records that are all done.
//! - Each event is applied in one database transaction that also records its
//!   `eventId` in the inbox; a redelivered event is skipped. Under load,
//!   records already waiting on a partition share a transaction
//!   ([`ConsumerOptions::max_batch`]), with one inbox statement for the
//!   lot. When a handler fails, the batch is rolled back, the records
//!   before the failing one are applied again and committed, and the
//!   failing one goes through the one-record path below. Handlers with
//!   effects outside the database set
//!   [`ConsumerOptions::keep_applied_on_failure`] instead: the records
//!   before a failing one are committed without being handled again.
//! - The offset is stored only after that transaction committed
//!   (`enable.auto.offset.store=false`); librdkafka commits stored offsets
//!   periodically and once more on shutdown. A crash re-delivers, the inbox
//!   absorbs it.
//! - Handler errors: retryable ones are retried with exponential backoff up
//!   to `max_attempts`, then dead-lettered; permanent ones are dead-lettered
//!   at once; infrastructure errors (database down) are retried until the
//!   database is back. Undecodable records are dead-lettered. A dead letter
//!   carries the original key, value and headers plus the reason and origin
//!   in `dlq.*` headers, and the partition keeps flowing.
//! - Each record is processed in a consumer span `process <topic>` whose
//!   parent is the producer span named by the record's `traceparent`; events
//!   the handler emits carry that span's context. Outcomes, failures, dead
//!   letters and handler durations are counted in [`metrics`](crate::metrics);
//!   the lag per partition comes from librdkafka's statistics (no broker
//!   round trip): `orderflow_consumer_lag`.

pub mod assignment;
mod dead_letter;
mod handler;
mod lag;
mod options;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codec::AvroCodec;
use crate::error::RunError;
use crate::events::EventType;
use crate::kafka::{EventProducer, KafkaConfig};
use crate::topics::TopicCatalog;

pub use dead_letter::headers as dlq_headers;
pub use handler::{BatchHandler, ConsumedEvent, Handler};
pub use lag::{LagContext, LAG_STATISTICS_INTERVAL};
pub use options::ConsumerOptions;

/// Pause after a consumer error event (see [`EventConsumer::run`]).
const ERROR_PAUSE: Duration = Duration::from_millis(20);
/// While errors go on, one log line per this long.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs a run of consumer errors: the first one, then a count every
/// [`ERROR_LOG_EVERY`], and the recovery.
#[derive(Default)]
struct ErrorLog {
    /// Errors since the last line, and when that line was written.
    since_logged: u64,
    logged_at: Option<std::time::Instant>,
    total: u64,
}

impl ErrorLog {
    fn failed(&mut self, group: &str, e: &rdkafka::error::KafkaError) {
        self.total += 1;
        self.since_logged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY);
        if due {
            tracing::warn!(%group, error = %e, errors = self.since_logged, "kafka consumer error");
            self.since_logged = 0;
            self.logged_at = Some(std::time::Instant::now());
        }
    }

    fn recovered(&mut self, group: &str) {
        if self.total > 0 {
            tracing::info!(%group, errors = self.total, "kafka consumer receiving again");
            *self = Self::default();
        }
    }
}

/// A consumer group member that dispatches events to handlers.
pub struct EventConsumer {
    kafka: KafkaConfig,
    group_id: String,
    topics: Vec<String>,
    pool: PgPool,
    codec: Arc<AvroCodec>,
    catalog: TopicCatalog,
    handlers: HashMap<EventType, Arc<dyn Handler>>,
    opts: ConsumerOptions,
}

impl EventConsumer {
    /// A consumer in group `group_id`. Subscribes to the topics of the
    /// streams of the event types given to [`EventConsumer::on`].
    pub fn new(
        kafka: &KafkaConfig,
        group_id: &str,
        pool: PgPool,
        codec: Arc<AvroCodec>,
        catalog: TopicCatalog,
    ) -> Self {
        Self {
            kafka: kafka.clone(),
            group_id: group_id.to_owned(),
            topics: Vec::new(),
            pool,
            codec,
            catalog,
            handlers: HashMap::new(),
            opts: ConsumerOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, opts: ConsumerOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Routes events of type `t` to `handler`. Other event types on the same
    /// topics are acknowledged and skipped.
    pub fn on(self, t: EventType, handler: impl Handler) -> Self {
        self.on_each(&[t], handler)
    }

    /// Routes events of every type in `types` to the one `handler`: a
    /// batch's consecutive records of these types go to
    /// [`Handler::handle_batch`] together (handlers given to separate
    /// [`on`](Self::on) calls get separate runs).
    pub fn on_each(mut self, types: &[EventType], handler: impl Handler) -> Self {
        let handler: Arc<dyn Handler> = Arc::new(handler);
        for &t in types {
            let topic = self.catalog.topic(t.stream()).to_owned();
            if !self.topics.contains(&topic) {
                self.topics.push(topic);
            }
            self.handlers.insert(t, handler.clone());
        }
        self
    }

    /// The topics this consumer subscribes to.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Consumes until `shutdown` is cancelled; then lets each partition
    /// worker finish its current record, commits stored offsets and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let mut config = self.kafka.client_config();
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        // `fetch.wait.max.ms` stays at librdkafka's 500 ms unless
        // `KAFKA_PROP_FETCH_WAIT_MAX_MS` sets it: Kafka, and the local
        // broker as patched in third_party/nisshi, answer a waiting fetch
        // as soon as a record arrives, so a longer wait adds no latency and
        // spares the broker idle reads.
        if config.get("statistics.interval.ms").is_none() {
            config.set(
                "statistics.interval.ms",
                LAG_STATISTICS_INTERVAL.as_millis().to_string(),
            );
        }
        let consumer: StreamConsumer<LagContext> = config.create_with_context(LagContext {
            group: self.group_id.clone(),
        })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        assignment::subscribed(&self.group_id, &self.topics);
        consumer.subscribe(&topics)?;
        let consumer = Arc::new(consumer);
        let dlq = EventProducer::new(&self.kafka)?;
        let ctx = Arc::new(worker::Context {
            consumer: consumer.clone(),
            pool: self.pool,
            codec: self.codec,
            catalog: self.catalog,
            handlers: self.handlers,
            dlq,
            group_id: self.group_id.clone(),
            opts: self.opts.clone(),
        });
        let stop_workers = CancellationToken::new();
        let mut failure = None;
        let mut workers: HashMap<(String, i32), (mpsc::Sender<OwnedMessage>, JoinHandle<()>)> =
            HashMap::new();
        tracing::info!(group = %self.group_id, topics = ?self.topics, "consumer started");
        // While the broker is unreachable librdkafka queues an error event
        // per failed connection attempt, in line with the records. They are
        // taken at once (a pause per error would, after a long outage, leave
        // the records waiting behind minutes of stale errors), logged once
        // and then summed every ERROR_LOG_EVERY, with a short pause so that
        // a client that fails in a loop cannot spin this task.
        let mut errors = ErrorLog::default();
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv() => m,
            };
            let owned = match msg {
                Ok(m) => {
                    errors.recovered(&self.group_id);
                    let owned = m.detach();
                    if let Some(waited) = worker::record_age(&owned) {
                        crate::metrics::pipeline().consumer_fetch_delay(
                            &self.group_id,
                            owned.topic(),
                            waited,
                        );
                    }
                    owned
                }
                Err(e) => {
                    errors.failed(&self.group_id, &e);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            let worker = match self.opts.workers_per_topic {
                0 => owned.partition(),
                n => owned.partition().rem_euclid(n as i32),
            };
            let key = (owned.topic().to_owned(), worker);
            let entry = workers.entry(key).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(ctx.opts.queue_per_worker);
                let handle = tokio::spawn(worker::run(ctx.clone(), rx, stop_workers.clone()));
                (tx, handle)
            });
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = entry.0.send(owned) => if let Err(e) = r {
                    let origin = format!("{}[{}]", e.0.topic(), e.0.partition());
                    tracing::error!(%origin, "partition worker stopped unexpectedly; stopping the consumer");
                    failure = Some(RunError::WorkerDied(origin));
                    break;
                },
            }
        }
        stop_workers.cancel();
        for (_, (tx, handle)) in workers {
            drop(tx);
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "partition worker panicked");
            }
        }
        drop(ctx);
        // The final commit, leaving the group and destroying the client all
        // block (for long when the broker is gone): keep them off the async
        // workers so the rest of the shutdown is not held up.
        let closing = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "final offset commit (nothing new to commit is fine)")
                }
            }
            consumer.unsubscribe();
            drop(consumer);
        });
        if let Err(e) = closing.await {
            tracing::warn!(error = %e, "closing the Kafka consumer failed");
        }
        assignment::left(&self.group_id);
        tracing::info!(group = %self.group_id, "consumer stopped");
        failure.map_or(Ok(()), Err)
    }
}

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
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Statistics};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codec::AvroCodec;
use crate::envelope::Envelope;
use crate::error::{HandlerError, RunError};
use crate::events::EventType;
use crate::inbox::Origin;
use crate::kafka::{EventProducer, KafkaConfig};
use crate::topics::TopicCatalog;
use crate::trace_context::TraceContext;

pub use dead_letter::headers as dlq_headers;

/// One decoded event handed to a [`Handler`].
#[derive(Debug, Clone)]
pub struct ConsumedEvent {
    /// The event.
    pub envelope: Envelope,
    /// Where it was read from.
    pub origin: Origin,
    /// The record key.
    pub key: Option<String>,
    /// The trace context of the producer, from the record headers.
    pub trace: Option<TraceContext>,
}

impl ConsumedEvent {
    /// Writes the event `payload` caused by this one to the outbox of `conn`
    /// (the handler's transaction), keyed by `key`, from `source`, continuing
    /// this event's correlation, metadata and trace. An event that cannot be
    /// serialised is a permanent error.
    pub async fn emit(
        &self,
        conn: &mut PgConnection,
        catalog: &TopicCatalog,
        source: &str,
        key: &str,
        payload: impl Into<crate::events::Event>,
    ) -> Result<(), HandlerError> {
        let mut rows = crate::outbox::Rows::default();
        self.follow_up(&mut rows, catalog, source, key, payload)?;
        rows.insert(conn).await.map_err(outbox_failure)
    }

    /// Adds the event `payload` caused by this one to `rows`, as
    /// [`emit`](Self::emit) would write it, for a handler that writes its
    /// events in the same statement as its state change.
    pub fn follow_up(
        &self,
        rows: &mut crate::outbox::Rows,
        catalog: &TopicCatalog,
        source: &str,
        key: &str,
        payload: impl Into<crate::events::Event>,
    ) -> Result<(), HandlerError> {
        let envelope = Envelope::caused_by(&self.envelope, source, payload);
        let trace = self.trace.as_ref().map(TraceContext::child);
        rows.push(catalog, key, &envelope, trace.as_ref())
            .map_err(outbox_failure)
    }
}

/// A database failure is retried; an event that cannot be serialised never
/// will be.
fn outbox_failure(e: crate::error::OutboxError) -> HandlerError {
    match e {
        crate::error::OutboxError::Database(e) => e.into(),
        crate::error::OutboxError::Codec(e) => HandlerError::permanent(e.to_string()),
    }
}

/// Applies one event type. `tx` is an open transaction that commits after
/// `handle` returns `Ok`; everything the handler writes (including outbox
/// rows for follow-up events) commits or rolls back with the inbox entry.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `event`.
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError>;

    /// Applies consecutive records of one partition that all go to this
    /// handler, in order, in `tx` (a batch: see
    /// [`ConsumerOptions::max_batch`]), each with its consumer span.
    /// `Err((i, e))`: record `i` failed with `e`; the caller rolls the whole
    /// transaction back, applies the records before `i` again and gives `i`
    /// its retries alone. An error that belongs to no record in particular
    /// (a statement for the whole batch failed) names record 0, through
    /// [`HandlerError::batch_failure`].
    ///
    /// The default calls [`handle`](Self::handle) for each record in its
    /// span. Override it to apply a batch in fewer statements (or implement
    /// [`BatchHandler`] instead); the result must be the same as applying
    /// the records one after the other.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        use tracing::Instrument;
        for (i, (event, span)) in events.iter().enumerate() {
            self.handle(tx, event)
                .instrument((*span).clone())
                .await
                .map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// A handler whose work is all in [`handle_batch`](Self::handle_batch). It
/// is a [`Handler`]: a single event is applied as a batch of one, in the
/// current span.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Applies a batch, with the contract of [`Handler::handle_batch`].
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)>;
}

#[async_trait]
impl<T: BatchHandler> Handler for T {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let span = tracing::Span::current();
        BatchHandler::handle_batch(self, tx, &[(event, &span)])
            .await
            .map_err(|(_, e)| e)
    }

    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        BatchHandler::handle_batch(self, tx, events).await
    }
}

/// Consumer tuning.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Attempts for a retryable handler error before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Records buffered per worker (a worker serves one partition, or
    /// several with [`workers_per_topic`](Self::workers_per_topic)).
    pub queue_per_worker: usize,
    /// At most this many records a worker has already received (each
    /// partition's in order) are applied in one transaction, with one inbox
    /// statement for all of them; 1 gives every record a transaction of its
    /// own. Batches cut commits under load and add no wait when the
    /// partition is quiet. Handlers of different keys that lock shared rows
    /// must lock a batch's rows in one order (e.g. sorted), or concurrent
    /// batches can deadlock each other; otherwise keep it at 1.
    pub max_batch: usize,
    /// Lanes per worker: a worker's records are split over this many
    /// lanes by key, and the lanes run concurrently, each in order. Every
    /// record of one key (one order) goes to the same lane, so per-key order
    /// holds; records of different keys may be applied out of offset order.
    /// A partition's offset only advances over records every lane is done
    /// with. Worth more than 1 when a handler waits on something slow
    /// outside the database (an SMTP server): with one lane a worker waits
    /// for each in turn. Each lane holds its own database connection while
    /// it works, so the pool bounds how many work at once. With
    /// [`workers_per_topic`](Self::workers_per_topic) at 0 this is per
    /// partition; at 1, per topic.
    pub lanes_per_worker: usize,
    /// When a handler fails a record of a batch, commit the records before
    /// it instead of rolling the batch back and handling them again.
    /// Without (the default), their effects commit once but their handlers
    /// run twice. Set it when a handler has an effect outside the database
    /// (sending an e-mail) that must not be repeated for another record's
    /// failure. The handlers must then leave nothing of a record they fail,
    /// nor of the records after it, in the transaction: a
    /// [`Handler::handle_batch`] that returns `Err((i, e))` has written the
    /// records before `i` only (e.g. it writes once every record is done).
    /// A statement that fails aborts the transaction: then the whole batch
    /// goes back to being applied one record at a time.
    pub keep_applied_on_failure: bool,
    /// The partitions of a topic share this many workers (partition `p`
    /// goes to worker `p % n`); 0 gives every partition a worker of its own.
    /// A worker applies its partitions' records in the order it received
    /// them, so each partition stays in order, and its batches take records
    /// of all its partitions: fewer, larger transactions when a topic has
    /// many partitions and little traffic on each. The price: a record
    /// waiting for a retry holds up the other partitions of its worker.
    pub workers_per_topic: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            queue_per_worker: 256,
            max_batch: 32,
            lanes_per_worker: 1,
            keep_applied_on_failure: false,
            workers_per_topic: 0,
        }
    }
}

/// How often librdkafka reports statistics, from which the consumer lag
/// gauge is updated (`KAFKA_PROP_STATISTICS_INTERVAL_MS` overrides it).
pub const LAG_STATISTICS_INTERVAL: Duration = Duration::from_secs(10);

/// The consumer's librdkafka context: turns statistics into the
/// `orderflow_consumer_lag` gauge (lag is the high watermark minus the
/// offset stored after processing or, before anything was processed, the
/// committed offset, per partition currently assigned), and rebalances into
/// the group's [`assignment`].
pub struct LagContext {
    group: String,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let lag = &crate::metrics::pipeline().consumer_lag;
        for (name, topic) in &statistics.topics {
            for p in topic.partitions.values() {
                if p.partition < 0 {
                    continue;
                }
                let labels = crate::metrics::PartitionLabels {
                    topic: name.clone(),
                    partition: p.partition.to_string(),
                };
                let value = [p.consumer_lag_stored, p.consumer_lag]
                    .into_iter()
                    .find(|v| *v >= 0);
                match (p.desired, value) {
                    (true, Some(v)) => {
                        lag.get_or_create(&labels).set(v);
                    }
                    (false, _) => {
                        lag.remove(&labels);
                    }
                    (true, None) => {}
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(group = %self.group, partitions = list.count(), "partitions assigned");
                assignment::rebalanced(&self.group, list, true);
            }
            Rebalance::Revoke(list) => {
                tracing::info!(group = %self.group, partitions = list.count(), "partitions revoked");
                assignment::rebalanced(&self.group, list, false);
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed");
                assignment::failed(&self.group, e.to_string());
            }
        }
    }
}

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
                    m.detach()
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

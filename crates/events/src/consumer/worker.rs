//! One partition's worker (or, with [`ConsumerOptions::workers_per_topic`],
//! the worker of several partitions of one topic): processes their records
//! in order, in one lane or, with [`ConsumerOptions::lanes_per_worker`],
//! in several lanes split by record key.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::dead_letter::dead_letter_headers;
use super::{ConsumedEvent, ConsumerOptions, Handler, LagContext};
use crate::codec::AvroCodec;
use crate::error::HandlerError;
use crate::events::EventType;
use crate::inbox::{self, Origin};
use crate::kafka::EventProducer;
use crate::metrics;
use crate::topics::TopicCatalog;
use crate::trace_context::TraceContext;

/// What every worker of one consumer shares.
pub(super) struct Context {
    pub consumer: Arc<StreamConsumer<LagContext>>,
    pub pool: PgPool,
    pub codec: Arc<AvroCodec>,
    pub catalog: TopicCatalog,
    pub handlers: HashMap<EventType, Arc<dyn Handler>>,
    pub dlq: EventProducer,
    pub group_id: String,
    pub opts: ConsumerOptions,
}

/// Stop requested while a record was still being worked on; it was not
/// acknowledged and will be redelivered.
struct Stopped;

pub(super) async fn run(
    ctx: Arc<Context>,
    rx: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
) {
    let lanes = ctx.opts.lanes_per_worker.max(1);
    if lanes == 1 {
        return run_lane(ctx, rx, stop, Acks::Direct).await;
    }
    run_lanes(ctx, rx, stop, lanes).await;
}

/// Splits the worker's records over `lanes` lanes by key (one key always
/// goes to the same lane, so its records stay in order) and runs the lanes
/// concurrently. Each partition's offset advances only over records that
/// are done, whichever lane finished them.
async fn run_lanes(
    ctx: Arc<Context>,
    mut rx: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
    lanes: usize,
) {
    let tracker: Arc<Mutex<Trackers>> = Arc::default();
    let mut senders = Vec::with_capacity(lanes);
    let mut handles = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, lane_rx) = mpsc::channel(ctx.opts.queue_per_worker);
        senders.push(tx);
        handles.push(tokio::spawn(run_lane(
            ctx.clone(),
            lane_rx,
            stop.clone(),
            Acks::Tracked(tracker.clone()),
        )));
    }
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(msg.partition())
            .or_default()
            .received(msg.offset());
        let lane = lane_of(msg.key(), lanes);
        let sent = tokio::select! {
            _ = stop.cancelled() => break,
            r = senders[lane].send(msg) => r,
        };
        if sent.is_err() {
            // The lane stopped (only on a stop request): so does the worker.
            break;
        }
    }
    drop(senders);
    for handle in handles {
        if let Err(e) = handle.await {
            tracing::error!(error = %e, "consumer lane panicked");
        }
    }
}

/// The lane of a record: a hash of its key (records without a key all go
/// to lane 0, in order).
fn lane_of(key: Option<&[u8]>, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let Some(key) = key else { return 0 };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// How a lane acknowledges a record it is done with.
enum Acks {
    /// The only lane of its worker: each record's offset is stored as it is
    /// done, since each partition's records are done in order.
    Direct,
    /// One of several lanes: a partition's offset is stored only up to its
    /// first record not yet done by any lane.
    Tracked(Arc<Mutex<Trackers>>),
}

/// The offset trackers of a worker's partitions (one topic), by partition.
type Trackers = HashMap<i32, OffsetTracker>;

impl Acks {
    /// `origins` (consecutive records of this lane, in order) are done.
    fn done<'a>(&self, ctx: &Context, origins: impl IntoIterator<Item = &'a Origin>) {
        // Where each partition's offset goes now (a worker may serve
        // several partitions; usually there is one).
        let mut upto: Vec<(&Origin, i64)> = Vec::with_capacity(1);
        let mut advance = |o: &'a Origin, offset: i64| match upto
            .iter_mut()
            .find(|(p, _)| p.partition == o.partition && p.topic == o.topic)
        {
            Some(entry) => entry.1 = offset,
            None => upto.push((o, offset)),
        };
        match self {
            Acks::Direct => origins.into_iter().for_each(|o| advance(o, o.offset)),
            Acks::Tracked(trackers) => {
                let mut t = trackers.lock().unwrap_or_else(|e| e.into_inner());
                for o in origins {
                    if let Some(offset) = t.entry(o.partition).or_default().done(o.offset) {
                        advance(o, offset);
                    }
                }
            }
        }
        for (o, offset) in upto {
            store_offset(ctx, &o.topic, o.partition, offset);
        }
    }
}

/// The records of one partition handed to its lanes and not yet done, to
/// find the offset up to which every record is done.
#[derive(Debug)]
pub(super) struct OffsetTracker {
    /// Offsets handed out and not done yet, with how many times (a record
    /// re-delivered after a rewind may still be in flight from before).
    outstanding: BTreeMap<i64, u32>,
    /// The highest offset received since the last rewind.
    highest: i64,
    /// The last offset stored.
    stored: i64,
}

impl Default for OffsetTracker {
    fn default() -> Self {
        Self {
            outstanding: BTreeMap::new(),
            highest: -1,
            stored: -1,
        }
    }
}

impl OffsetTracker {
    /// A record at `offset` was handed to a lane. Records arrive in offset
    /// order, from where the partition's assignment starts; an offset at or
    /// below the highest seen means the partition was re-read from there
    /// (reassignment, seek): what was done beyond it no longer counts until
    /// it is received again.
    pub(super) fn received(&mut self, offset: i64) {
        if offset <= self.highest || self.highest < 0 {
            // Nothing before the first record received counts as ours.
            self.stored = offset - 1;
        }
        self.highest = offset;
        *self.outstanding.entry(offset).or_insert(0) += 1;
    }

    /// The record at `offset` is done. Returns the offset to store when
    /// every record up to it is now done and it is past the last one stored.
    pub(super) fn done(&mut self, offset: i64) -> Option<i64> {
        if let Some(n) = self.outstanding.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&offset);
            }
        }
        let upto = match self.outstanding.keys().next() {
            Some(&first) => (first - 1).min(self.highest),
            None => self.highest,
        };
        (upto > self.stored).then(|| {
            self.stored = upto;
            upto
        })
    }
}

/// Processes the records of one lane in order (a worker's only lane
/// takes all of them).
async fn run_lane(
    ctx: Arc<Context>,
    mut rx: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
    acks: Acks,
) {
    let max_batch = ctx.opts.max_batch.max(1);
    // Records received but not yet applied or acknowledged, in offset order,
    // each with its consumer span.
    let mut pending: VecDeque<(OwnedMessage, tracing::Span)> = VecDeque::new();
    loop {
        if pending.is_empty() {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                m = rx.recv() => match m { Some(m) => m, None => return },
            };
            pending.push_back(with_span(&ctx.group_id, msg));
        }
        // Whatever else is already queued joins the batch: no waiting, so a
        // quiet partition still handles each record as soon as it arrives.
        while pending.len() < max_batch {
            match rx.try_recv() {
                Ok(msg) => pending.push_back(with_span(&ctx.group_id, msg)),
                Err(_) => break,
            }
        }
        let mut first_failure = None;
        if pending.len() > 1 {
            let (applied, failure) = apply_batch(&ctx, &acks, pending.make_contiguous()).await;
            pending.drain(..applied);
            first_failure = failure;
            if pending.is_empty() {
                continue;
            }
        }
        // The head record alone: a batch of one, or the record a batch
        // stopped at (with the error of its attempt in the batch, if any).
        let (msg, span) = pending.pop_front().expect("pending is not empty");
        if process(&ctx, &acks, &msg, first_failure, &stop)
            .instrument(span)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// `msg` with its consumer span, whose parent is the producer span named by
/// the record's `traceparent`. Called when the lane takes the record up, so
/// it also records how long the record took to get here.
fn with_span(group_id: &str, msg: OwnedMessage) -> (OwnedMessage, tracing::Span) {
    if let Some(ms) = msg.timestamp().to_millis() {
        let waited = chrono::Utc::now().timestamp_millis().saturating_sub(ms);
        metrics::pipeline().consumer_delay(
            msg.topic(),
            Duration::from_millis(u64::try_from(waited).unwrap_or(0)),
        );
    }
    let span = process_span(group_id, &msg);
    if let Some(parent) = msg.headers().and_then(TraceContext::extract) {
        parent.set_as_parent_of(&span);
    }
    (msg, span)
}

/// The consumer span of one record (OpenTelemetry messaging conventions);
/// its parent is set from the record's `traceparent` header.
fn process_span(group_id: &str, msg: &OwnedMessage) -> tracing::Span {
    let key = msg.key().map(String::from_utf8_lossy);
    tracing::info_span!(
        "process",
        otel.name = format!("process {}", msg.topic()),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = msg.topic(),
        messaging.destination.partition.id = msg.partition(),
        messaging.kafka.offset = msg.offset(),
        messaging.kafka.message.key = key.as_deref(),
        messaging.consumer.group.name = %group_id,
        messaging.message.id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Processes one record: decodes it, applies it in a transaction of its own
/// and stores its offset; retries, dead-letters or waits as its errors
/// require. `first_failure` is the error of an attempt already made (in a
/// batch that stopped at this record); it counts as attempt 1.
async fn process(
    ctx: &Context,
    acks: &Acks,
    msg: &OwnedMessage,
    mut first_failure: Option<HandlerError>,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let origin = origin_of(msg);
    let payload = msg.payload().unwrap_or_default();
    let mut attempt = 0u32;
    let envelope = loop {
        match ctx.codec.decode(payload).await {
            Ok(e) => break e,
            Err(e) if e.is_transient() => {
                attempt += 1;
                tracing::warn!(error = %e, "cannot decode yet (registry unavailable); retrying");
                backoff(ctx, attempt, stop).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, reason = e.reason(), "undecodable record; dead-lettering");
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("error.type", e.reason());
                dead_letter(ctx, msg, e.reason(), &e.to_string(), stop).await?;
                acks.done(ctx, [&origin]);
                return Ok(());
            }
        }
    };
    let span = tracing::Span::current();
    let event_type = envelope.event_type().name();
    span.record("event_type", event_type);
    span.record(
        "messaging.message.id",
        tracing::field::display(envelope.event_id),
    );
    let m = metrics::pipeline();
    let Some(handler) = ctx.handlers.get(&envelope.event_type()) else {
        tracing::debug!("no handler for this event type; skipped");
        span.record("outcome", "skipped");
        m.consumed(&origin.topic, event_type, "skipped");
        acks.done(ctx, [&origin]);
        return Ok(());
    };
    let event = consumed_event(msg, envelope);
    let (mut attempt, mut infra_attempt) = (0u32, 0u32);
    let failed = |error: &'static str| {
        m.failed(&origin.topic, event_type, error);
        span.record("otel.status_code", "ERROR");
        span.record("error.type", error);
    };
    loop {
        attempt += 1;
        let result = match first_failure.take() {
            // Its duration was recorded by the batch.
            Some(e) => Err(e),
            None => {
                let started = Instant::now();
                let result = apply(ctx, handler.as_ref(), &event).await;
                m.handler_duration(&origin.topic, event_type, started.elapsed());
                result
            }
        };
        match result {
            Ok(applied) => {
                tracing::debug!(applied, "event handled");
                let outcome = if applied { "applied" } else { "duplicate" };
                span.record("outcome", outcome);
                if attempt > 1 || infra_attempt > 0 {
                    // A retry that finally succeeded is not an error.
                    span.record("otel.status_code", "OK");
                }
                m.consumed(&origin.topic, event_type, outcome);
                break;
            }
            Err(HandlerError::Permanent(e)) => {
                failed("permanent");
                tracing::warn!(error = %e, "handler rejected the event; dead-lettering");
                dead_letter(ctx, msg, "handler-rejected", &e, stop).await?;
                break;
            }
            Err(HandlerError::Retryable(e)) if attempt >= ctx.opts.max_attempts => {
                failed("retryable");
                tracing::warn!(error = %e, attempt, "retries exhausted; dead-lettering");
                dead_letter(ctx, msg, "retries-exhausted", &e, stop).await?;
                break;
            }
            Err(HandlerError::Retryable(e)) => {
                failed("retryable");
                tracing::info!(error = %e, attempt, "handler failed; retrying");
                backoff(ctx, attempt, stop).await?;
            }
            Err(HandlerError::Infrastructure(e)) => {
                failed("infrastructure");
                // Not the event's fault: wait as long as it takes, and never
                // let it count towards dead-lettering.
                tracing::warn!(error = %e, "a dependency is unavailable; retrying");
                attempt -= 1;
                infra_attempt += 1;
                backoff(ctx, infra_attempt, stop).await?;
            }
        }
    }
    acks.done(ctx, [&origin]);
    Ok(())
}

fn consumed_event(msg: &OwnedMessage, envelope: crate::envelope::Envelope) -> ConsumedEvent {
    ConsumedEvent {
        trace: msg.headers().and_then(TraceContext::extract),
        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        envelope,
        origin: origin_of(msg),
    }
}

/// Where `msg` was read from.
fn origin_of(msg: &OwnedMessage) -> Origin {
    Origin {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
    }
}

/// Applies consecutive records of this partition in one transaction (one
/// commit, one WAL flush for the lot) and stores the offset of the last one
/// applied.
///
/// Returns how many records from the start of `batch` were applied (or
/// skipped: no handler) and acknowledged, and, when the batch stopped at a
/// record because its handler failed, that error. The caller processes the
/// record it stopped at alone, so retries, dead letters and waiting for the
/// database behave exactly as for a single record. A record that cannot be
/// decoded yet, or a database failure outside a handler, stops the batch
/// without an error; if the commit fails nothing was applied.
async fn apply_batch(
    ctx: &Context,
    acks: &Acks,
    batch: &[(OwnedMessage, tracing::Span)],
) -> (usize, Option<HandlerError>) {
    let mut events = Vec::with_capacity(batch.len());
    for (msg, span) in batch {
        let Ok(envelope) = ctx.codec.decode(msg.payload().unwrap_or_default()).await else {
            break;
        };
        events.push((consumed_event(msg, envelope), span));
    }
    // A batch with nothing for this service's handlers (most records of a
    // topic another service's saga steps share) needs no transaction.
    let in_transaction = events
        .iter()
        .any(|(e, _)| ctx.handlers.contains_key(&e.envelope.event_type()));
    let (done, failure) = if !in_transaction {
        (vec![("skipped", Duration::ZERO); events.len()], None)
    } else if ctx.opts.keep_applied_on_failure {
        apply_keeping_applied(ctx, &events).await
    } else {
        apply_all_or_nothing(ctx, &events).await
    };
    if done.is_empty() {
        return (0, failure);
    }
    let m = metrics::pipeline();
    for ((event, span), (outcome, took)) in events.iter().zip(&done) {
        let event_type = event.envelope.event_type().name();
        span.record("event_type", event_type);
        span.record(
            "messaging.message.id",
            tracing::field::display(event.envelope.event_id),
        );
        span.record("outcome", *outcome);
        if *outcome == "applied" {
            m.handler_duration(&event.origin.topic, event_type, *took);
        }
        m.consumed(&event.origin.topic, event_type, outcome);
    }
    if in_transaction {
        m.transaction_records(&events[0].0.origin.topic, done.len());
    }
    acks.done(ctx, events[..done.len()].iter().map(|(e, _)| &e.origin));
    (done.len(), failure)
}

/// The outcome (`applied`, `duplicate` or `skipped`) of each record of a
/// committed batch, in order, with its handler's time.
type Outcomes = Vec<(&'static str, Duration)>;

/// The batch without savepoints: one inbox statement for every record, then
/// the handlers. When a handler fails, the whole transaction is rolled back
/// and the records before the failing one are applied again, alone in a
/// new transaction; their effects are committed once, but their handlers
/// run twice.
async fn apply_all_or_nothing(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
) -> (Outcomes, Option<HandlerError>) {
    let mut failure = None;
    let mut upto = events.len();
    while upto > 0 {
        match try_all(ctx, &events[..upto]).await {
            Ok(done) => return (done, failure),
            Err(None) => break,
            Err(Some((at, e))) => {
                failure = Some(e);
                upto = at;
            }
        }
    }
    (Vec::new(), failure)
}

/// Applies every record of `events` in one transaction, or none of them.
/// `Err(Some((i, e)))`: the handler of record `i` failed with `e`;
/// `Err(None)`: the database failed outside a handler.
async fn try_all(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
) -> Result<Outcomes, Option<(usize, HandlerError)>> {
    let mut tx = ctx.pool.begin().await.map_err(|_| None)?;
    let fresh = inbox::record_new(&mut tx, &ctx.group_id, &inbox_entries(ctx, events))
        .await
        .map_err(|_| None)?;
    let (mut done, todo) = sort_out(ctx, events, fresh);
    if let Some((at, e)) = run_handlers(&mut tx, events, &todo, &mut done).await {
        // Dropping `tx` would roll back too, but only once the
        // connection is next used; roll back now.
        let _ = tx.rollback().await;
        return Err(Some((at, e)));
    }
    if let Err(e) = tx.commit().await {
        tracing::debug!(error = %e, "batch commit failed; processing its records one at a time");
        return Err(None);
    }
    Ok(done)
}

/// Records to apply (index in the batch) with their handlers.
type Todo<'c> = Vec<(usize, &'c Arc<dyn Handler>)>;

/// The records to apply, with their handlers, and the outcome of each
/// record so far: duplicates (seen before, or earlier in this batch) and
/// records without a handler write nothing. `fresh`: the ids the inbox
/// statement recorded.
fn sort_out<'c>(
    ctx: &'c Context,
    events: &[(ConsumedEvent, &tracing::Span)],
    mut fresh: HashSet<uuid::Uuid>,
) -> (Outcomes, Todo<'c>) {
    let mut done = vec![("skipped", Duration::ZERO); events.len()];
    let mut todo = Vec::with_capacity(events.len());
    for (i, (event, _)) in events.iter().enumerate() {
        let Some(handler) = ctx.handlers.get(&event.envelope.event_type()) else {
            continue;
        };
        if fresh.remove(&event.envelope.event_id) {
            todo.push((i, handler));
        } else {
            done[i].0 = "duplicate";
        }
    }
    (done, todo)
}

/// Hands the records of `todo` to their handlers on `conn`, consecutive
/// records of one handler together, and marks them applied in `done` (each
/// with its share of its run's time). Stops at the first record a handler
/// fails: `Some((its index in the batch, the error))`; the records its run
/// applied before it are marked applied too.
async fn run_handlers(
    conn: &mut sqlx::PgConnection,
    events: &[(ConsumedEvent, &tracing::Span)],
    todo: &Todo<'_>,
    done: &mut Outcomes,
) -> Option<(usize, HandlerError)> {
    for run in todo.chunk_by(|a, b| Arc::ptr_eq(a.1, b.1)) {
        let items: Vec<(&ConsumedEvent, &tracing::Span)> = run
            .iter()
            .map(|&(i, _)| (&events[i].0, events[i].1))
            .collect();
        let started = Instant::now();
        let result = run[0].1.handle_batch(conn, &items).await;
        // The run's time, shared by its records.
        let took = started.elapsed() / run.len() as u32;
        let applied = match &result {
            Ok(()) => run.len(),
            Err((j, _)) => (*j).min(run.len() - 1),
        };
        for &(i, _) in &run[..applied] {
            done[i] = ("applied", took);
        }
        if let Err((_, e)) = result {
            let at = run[applied].0;
            let event = &events[at].0;
            metrics::pipeline().handler_duration(
                &event.origin.topic,
                event.envelope.event_type().name(),
                took,
            );
            return Some((at, e));
        }
    }
    None
}

/// The batch for handlers that keep what they applied
/// ([`keep_applied_on_failure`](crate::consumer::ConsumerOptions::keep_applied_on_failure)):
/// one inbox statement records the whole batch first. When a handler fails
/// record `i`, the inbox entries of `i` and of the records after it are
/// taken out again, and the records before `i` are committed without being
/// handled again; the rest are applied later.
async fn apply_keeping_applied(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
) -> (Outcomes, Option<HandlerError>) {
    let Ok(mut tx) = ctx.pool.begin().await else {
        return (Vec::new(), None);
    };
    let Ok(fresh) = inbox::record_new(&mut tx, &ctx.group_id, &inbox_entries(ctx, events)).await
    else {
        return (Vec::new(), None);
    };
    let (mut done, todo) = sort_out(ctx, events, fresh);
    let mut failure = None;
    if let Some((at, e)) = run_handlers(&mut tx, events, &todo, &mut done).await {
        // Take the failed record and the ones not reached out of the
        // inbox; keep the ones before it.
        let undone: Vec<uuid::Uuid> = todo
            .iter()
            .filter(|&&(i, _)| i >= at)
            .map(|&(i, _)| events[i].0.envelope.event_id)
            .collect();
        if inbox::forget(&mut tx, &ctx.group_id, &undone)
            .await
            .is_err()
        {
            return (Vec::new(), None);
        }
        failure = Some(e);
        done.truncate(at);
    }
    if done.is_empty() {
        return (done, failure);
    }
    if let Err(e) = tx.commit().await {
        tracing::debug!(error = %e, "batch commit failed; processing its records one at a time");
        return (Vec::new(), None);
    }
    (done, failure)
}

/// The inbox entries of the records of `events` that have a handler.
fn inbox_entries<'a>(
    ctx: &Context,
    events: &'a [(ConsumedEvent, &tracing::Span)],
) -> Vec<inbox::Entry<'a>> {
    events
        .iter()
        .filter(|(e, _)| ctx.handlers.contains_key(&e.envelope.event_type()))
        .map(|(e, _)| inbox::Entry {
            event_id: e.envelope.event_id,
            event_type: e.envelope.event_type().name(),
            origin: &e.origin,
        })
        .collect()
}

/// Applies `event` in one transaction with its inbox entry. `Ok(false)`:
/// already applied before.
async fn apply(
    ctx: &Context,
    handler: &dyn Handler,
    event: &ConsumedEvent,
) -> Result<bool, HandlerError> {
    let mut tx = ctx.pool.begin().await?;
    if !record_and_handle(&mut tx, ctx, handler, event).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    metrics::pipeline().transaction_records(&event.origin.topic, 1);
    Ok(true)
}

/// Records `event` in the inbox on `conn` and, unless it was applied
/// before (`Ok(false)`), runs its handler there.
async fn record_and_handle(
    conn: &mut sqlx::PgConnection,
    ctx: &Context,
    handler: &dyn Handler,
    event: &ConsumedEvent,
) -> Result<bool, HandlerError> {
    let t = event.envelope.event_type();
    if !inbox::try_record(
        conn,
        &ctx.group_id,
        event.envelope.event_id,
        t.name(),
        &event.origin,
    )
    .await?
    {
        return Ok(false);
    }
    handler.handle(conn, event).await?;
    Ok(true)
}

fn store_offset(ctx: &Context, topic: &str, partition: i32, offset: i64) {
    // The committed offset is the next one to read, i.e. `offset + 1`; but
    // `store_offset` (librdkafka's `rd_kafka_offset_store`) adds that 1
    // itself, so it takes the offset of the record just processed.
    if let Err(e) = ctx.consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile; its new owner re-reads the
        // record and the inbox makes that harmless.
        tracing::debug!(error = %e, "could not store offset");
    }
}

async fn dead_letter(
    ctx: &Context,
    msg: &OwnedMessage,
    reason: &str,
    error: &str,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let topic = ctx.catalog.dlq_topic(msg.topic());
    let headers = dead_letter_headers(msg, &ctx.group_id, reason, error);
    let mut attempt = 0u32;
    loop {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&topic).headers(headers.clone());
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(p) = msg.payload() {
            record = record.payload(p);
        }
        match ctx.dlq.send_record(record).await {
            Ok(()) => {
                metrics::pipeline().dead_lettered(msg.topic(), reason);
                tracing::Span::current().record("outcome", "dead_lettered");
                tracing::info!(dlq_topic = %topic, reason, "record dead-lettered");
                return Ok(());
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(error = %e, dlq_topic = %topic, "could not write dead letter; retrying");
                backoff(ctx, attempt, stop).await?;
            }
        }
    }
}

async fn backoff(ctx: &Context, attempt: u32, stop: &CancellationToken) -> Result<(), Stopped> {
    let exp = ctx.opts.min_backoff.saturating_mul(1u32 << attempt.min(16));
    let delay = exp.min(ctx.opts.max_backoff);
    // Up to 25% jitter so many workers don't retry in lockstep.
    let jitter = Duration::from_millis(rand::random::<u64>() % (delay.as_millis() as u64 / 4 + 1));
    tokio::select! {
        _ = stop.cancelled() => Err(Stopped),
        _ = tokio::time::sleep(delay + jitter) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(received: impl IntoIterator<Item = i64>) -> OffsetTracker {
        let mut t = OffsetTracker::default();
        for o in received {
            t.received(o);
        }
        t
    }

    #[test]
    fn in_order_completion_stores_each_offset() {
        let mut t = tracker(0..3);
        assert_eq!(t.done(0), Some(0));
        assert_eq!(t.done(1), Some(1));
        assert_eq!(t.done(2), Some(2));
    }

    #[test]
    fn offset_waits_for_the_first_record_not_done() {
        let mut t = tracker(10..15);
        assert_eq!(t.done(12), None, "10 and 11 are still in flight");
        assert_eq!(t.done(11), None, "10 is still in flight");
        assert_eq!(t.done(14), None);
        assert_eq!(t.done(10), Some(12), "10..=12 are done, 13 is not");
        assert_eq!(t.done(13), Some(14));
    }

    #[test]
    fn offset_gaps_do_not_hold_the_offset_back() {
        // Offsets need not be contiguous (compaction, control records).
        let mut t = tracker([3, 7, 20]);
        assert_eq!(t.done(7), None);
        assert_eq!(t.done(3), Some(19), "8..=19 do not exist: 20 came after 7");
        assert_eq!(t.done(20), Some(20));
    }

    #[test]
    fn a_rewind_never_stores_past_what_was_received_again() {
        let mut t = tracker(100..105);
        assert_eq!(t.done(100), Some(100));
        // Reassigned, re-read from 101 while 104 from before is in flight.
        t.received(101);
        t.received(102);
        assert_eq!(t.done(101), None, "the old 101 is still outstanding");
        assert_eq!(t.done(101), Some(101), "both copies of 101 done");
        assert_eq!(t.done(104), None, "the old 104 says nothing of 102");
        assert_eq!(t.done(102), None, "one copy of 102 is still outstanding");
        assert_eq!(t.done(102), Some(102));
        assert_eq!(t.done(103), None, "nothing past 102 was received again");
    }

    #[test]
    fn a_rewind_stores_again_what_is_done_again() {
        let mut t = tracker(0..3);
        for o in 0..3 {
            t.done(o);
        }
        t.received(0);
        assert_eq!(t.done(0), Some(0));
    }

    #[test]
    fn one_key_always_takes_the_same_lane() {
        let keys: Vec<String> = (0..200).map(|i| format!("order-{i}")).collect();
        let mut used = std::collections::HashSet::new();
        for k in &keys {
            let lane = lane_of(Some(k.as_bytes()), 4);
            assert!(lane < 4);
            assert_eq!(lane, lane_of(Some(k.as_bytes()), 4));
            used.insert(lane);
        }
        assert_eq!(used.len(), 4, "200 keys spread over every lane");
        assert_eq!(lane_of(None, 4), 0);
    }
}

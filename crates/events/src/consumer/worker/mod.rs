//! One partition's worker (or, with [`ConsumerOptions::workers_per_topic`],
//! the worker of several partitions of one topic): processes their records
//! in order, in one lane or, with [`ConsumerOptions::lanes_per_worker`],
//! in several lanes split by record key.
//!
//! - this module: the lanes and their loop, storing offsets, backing off;
//! - [`offsets`]: how a lane acknowledges what it is done with, and where
//!   each partition's offset may move;
//! - [`spans`]: the consumer span of each record;
//! - [`single`]: one record in a transaction of its own, with retries and
//!   dead letters;
//! - [`batch`]: consecutive records in one transaction, in the strategy the
//!   options ask for.
//!
//! Metrics are recorded where a record's outcome is known: in [`single`]
//! and [`batch`].

mod batch;
mod offsets;
mod single;
mod spans;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ConsumerOptions, Handler, LagContext};
use crate::codec::AvroCodec;
use crate::events::EventType;
use crate::kafka::EventProducer;
use crate::topics::TopicCatalog;
use batch::apply_batch;
use offsets::{Acks, Trackers};
use single::process;
use spans::with_span;

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
pub(super) struct Stopped;

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

/// How long ago `msg` was given to its producer (its timestamp), 0 when
/// the clocks disagree; `None` when it carries no timestamp.
pub(super) fn record_age(msg: &OwnedMessage) -> Option<Duration> {
    let ms = msg.timestamp().to_millis()?;
    let waited = chrono::Utc::now().timestamp_millis().saturating_sub(ms);
    Some(Duration::from_millis(u64::try_from(waited).unwrap_or(0)))
}

pub(super) fn store_offset(ctx: &Context, topic: &str, partition: i32, offset: i64) {
    // The committed offset is the next one to read, i.e. `offset + 1`; but
    // `store_offset` (librdkafka's `rd_kafka_offset_store`) adds that 1
    // itself, so it takes the offset of the record just processed.
    if let Err(e) = ctx.consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile; its new owner re-reads the
        // record and the inbox makes that harmless.
        tracing::debug!(error = %e, "could not store offset");
    }
}

pub(super) async fn backoff(
    ctx: &Context,
    attempt: u32,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
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

//! One partition's worker: processes that partition's records in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
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
    mut rx: mpsc::Receiver<OwnedMessage>,
    stop: CancellationToken,
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
            let (applied, failure) = apply_batch(&ctx, pending.make_contiguous()).await;
            pending.drain(..applied);
            first_failure = failure;
            if pending.is_empty() {
                continue;
            }
        }
        // The head record alone: a batch of one, or the record a batch
        // stopped at (with the error of its attempt in the batch, if any).
        let (msg, span) = pending.pop_front().expect("pending is not empty");
        if process(&ctx, &msg, first_failure, &stop)
            .instrument(span)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// `msg` with its consumer span, whose parent is the producer span named by
/// the record's `traceparent`.
fn with_span(group_id: &str, msg: OwnedMessage) -> (OwnedMessage, tracing::Span) {
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
    msg: &OwnedMessage,
    mut first_failure: Option<HandlerError>,
    stop: &CancellationToken,
) -> Result<(), Stopped> {
    let origin = Origin {
        topic: msg.topic().to_owned(),
        partition: msg.partition(),
        offset: msg.offset(),
    };
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
                store_offset(ctx, &origin);
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
        store_offset(ctx, &origin);
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
    store_offset(ctx, &origin);
    Ok(())
}

fn consumed_event(msg: &OwnedMessage, envelope: crate::envelope::Envelope) -> ConsumedEvent {
    ConsumedEvent {
        trace: msg.headers().and_then(TraceContext::extract),
        key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        envelope,
        origin: Origin {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
        },
    }
}

/// Applies consecutive records of this partition in one transaction (one
/// commit, one WAL flush for the lot), each behind a savepoint with its own
/// inbox entry, and stores the offset of the last one applied.
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
    batch: &[(OwnedMessage, tracing::Span)],
) -> (usize, Option<HandlerError>) {
    struct Done<'a> {
        event: ConsumedEvent,
        span: &'a tracing::Span,
        outcome: &'static str,
        took: Duration,
    }
    let Ok(mut tx) = ctx.pool.begin().await else {
        return (0, None);
    };
    let mut done: Vec<Done<'_>> = Vec::with_capacity(batch.len());
    let mut failure = None;
    for (msg, span) in batch {
        let Ok(envelope) = ctx.codec.decode(msg.payload().unwrap_or_default()).await else {
            break;
        };
        let event = consumed_event(msg, envelope);
        let Some(handler) = ctx.handlers.get(&event.envelope.event_type()) else {
            done.push(Done {
                event,
                span,
                outcome: "skipped",
                took: Duration::ZERO,
            });
            continue;
        };
        let started = Instant::now();
        let result = async {
            sqlx::query("SAVEPOINT orderflow_event")
                .execute(&mut *tx)
                .await?;
            record_and_handle(&mut tx, ctx, handler.as_ref(), &event).await
        }
        .instrument(span.clone())
        .await;
        let took = started.elapsed();
        match result {
            Ok(applied) => done.push(Done {
                event,
                span,
                outcome: if applied { "applied" } else { "duplicate" },
                took,
            }),
            Err(e) => {
                metrics::pipeline().handler_duration(
                    msg.topic(),
                    event.envelope.event_type().name(),
                    took,
                );
                // Undo this record's writes; keep the ones before it.
                if sqlx::query("ROLLBACK TO SAVEPOINT orderflow_event")
                    .execute(&mut *tx)
                    .await
                    .is_err()
                {
                    return (0, None);
                }
                failure = Some(e);
                break;
            }
        }
    }
    if done.is_empty() {
        return (0, failure);
    }
    if let Err(e) = tx.commit().await {
        tracing::debug!(error = %e, "batch commit failed; processing its records one at a time");
        return (0, None);
    }
    let m = metrics::pipeline();
    for d in &done {
        let event_type = d.event.envelope.event_type().name();
        d.span.record("event_type", event_type);
        d.span.record(
            "messaging.message.id",
            tracing::field::display(d.event.envelope.event_id),
        );
        d.span.record("outcome", d.outcome);
        if d.outcome != "skipped" {
            m.handler_duration(&d.event.origin.topic, event_type, d.took);
        }
        m.consumed(&d.event.origin.topic, event_type, d.outcome);
    }
    store_offset(ctx, &done[done.len() - 1].event.origin);
    (done.len(), failure)
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

fn store_offset(ctx: &Context, origin: &Origin) {
    // The committed offset is the next one to read, i.e. `offset + 1`; but
    // `store_offset` (librdkafka's `rd_kafka_offset_store`) adds that 1
    // itself, so it takes the offset of the record just processed.
    if let Err(e) = ctx
        .consumer
        .store_offset(&origin.topic, origin.partition, origin.offset)
    {
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

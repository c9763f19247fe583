//! One record in a transaction of its own: decoded (waiting for the
//! registry when it is down), applied with its inbox entry, retried,
//! dead-lettered or waited on as its errors require.

use std::time::Instant;

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use super::offsets::Acks;
use super::{backoff, Context, Stopped};
use crate::consumer::dead_letter::dead_letter_headers;
use crate::consumer::{ConsumedEvent, Handler};
use crate::error::HandlerError;
use crate::inbox::{self, Origin};
use crate::metrics;
use crate::trace_context::TraceContext;

/// Processes one record: decodes it, applies it in a transaction of its own
/// and stores its offset; retries, dead-letters or waits as its errors
/// require. `first_failure` is the error of an attempt already made (in a
/// batch that stopped at this record); it counts as attempt 1.
pub(super) async fn process(
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
        m.consumed(&ctx.group_id, &origin.topic, event_type, "skipped");
        acks.done(ctx, [&origin]);
        return Ok(());
    };
    if ctx.opts.quarantine.contains(&envelope.event_type()) {
        tracing::warn!("event type quarantined (CONSUMER_QUARANTINE); dead-lettering");
        m.failed(&ctx.group_id, &origin.topic, event_type, "quarantined");
        dead_letter(
            ctx,
            msg,
            "quarantined",
            &format!("{event_type} is quarantined in this consumer (CONSUMER_QUARANTINE)"),
            stop,
        )
        .await?;
        acks.done(ctx, [&origin]);
        return Ok(());
    }
    let event = consumed_event(msg, envelope);
    let (mut attempt, mut infra_attempt) = (0u32, 0u32);
    let failed = |error: &'static str| {
        m.failed(&ctx.group_id, &origin.topic, event_type, error);
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
                m.handler_duration(&ctx.group_id, &origin.topic, event_type, started.elapsed());
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
                m.consumed(&ctx.group_id, &origin.topic, event_type, outcome);
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

pub(super) fn consumed_event(
    msg: &OwnedMessage,
    envelope: crate::envelope::Envelope,
) -> ConsumedEvent {
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
    metrics::pipeline().transaction_records(&ctx.group_id, &event.origin.topic, 1);
    Ok(true)
}

/// Records `event` in the inbox on `conn` and, unless it was applied
/// before (`Ok(false)`), runs its handler there; without the inbox
/// ([`use_inbox`](crate::consumer::ConsumerOptions::use_inbox)) runs it.
async fn record_and_handle(
    conn: &mut sqlx::PgConnection,
    ctx: &Context,
    handler: &dyn Handler,
    event: &ConsumedEvent,
) -> Result<bool, HandlerError> {
    let t = event.envelope.event_type();
    if ctx.opts.use_inbox
        && !inbox::try_record(
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
                metrics::pipeline().dead_lettered(&ctx.group_id, msg.topic(), reason);
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

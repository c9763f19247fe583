//! Consecutive records of one partition in one transaction (one commit,
//! one WAL flush for the lot), all or nothing or keeping what was applied
//! ([`crate::consumer::ConsumerOptions::keep_applied_on_failure`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};
use sqlx::{Connection, Postgres, Transaction};

use super::offsets::Acks;
use super::single::consumed_event;
use super::Context;
use crate::consumer::{ConsumedEvent, Handler};
use crate::error::HandlerError;
use crate::inbox;
use crate::metrics;

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
pub(super) async fn apply_batch(
    ctx: &Context,
    acks: &Acks,
    batch: &[(OwnedMessage, tracing::Span)],
) -> (usize, Option<HandlerError>) {
    let mut events = Vec::with_capacity(batch.len());
    for (msg, span) in batch {
        let Ok(envelope) = ctx.codec.decode(msg.payload().unwrap_or_default()).await else {
            break;
        };
        // A quarantined record ends the batch: the one-record path
        // dead-letters it.
        if ctx.handlers.contains_key(&envelope.event_type())
            && ctx.opts.quarantine.contains(&envelope.event_type())
        {
            break;
        }
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
            m.handler_duration(&ctx.group_id, &event.origin.topic, event_type, *took);
        }
        m.consumed(&ctx.group_id, &event.origin.topic, event_type, outcome);
    }
    if in_transaction {
        m.transaction_records(&ctx.group_id, &events[0].0.origin.topic, done.len());
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
    match recorded(ctx, events, Mode::AllOrNothing).await {
        Some(Finished::AllOrNothing(result)) => result,
        _ => Err(None),
    }
}

/// [`try_all`] once its transaction is open and `fresh` holds the ids the
/// inbox had not seen.
async fn finish_all(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
    mut tx: Transaction<'_, Postgres>,
    fresh: HashSet<uuid::Uuid>,
) -> Result<Outcomes, Option<(usize, HandlerError)>> {
    let (mut done, todo) = sort_out(ctx, events, fresh);
    if let Some((at, e)) = run_handlers(&ctx.group_id, &mut tx, events, &todo, &mut done).await {
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

/// How a batch's transaction ends when a handler fails.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Rolled back: [`try_all`].
    AllOrNothing,
    /// The records before the failing one committed: [`apply_keeping_applied`].
    KeepApplied,
}

/// What a batch's transaction came to, by its [`Mode`]. ([`recorded`]
/// takes a mode rather than a closure: an async closure given the
/// transaction makes the worker's future fail `Send` for every lifetime,
/// and a helper cannot hand the transaction back, since on the fallback
/// path it uses the connection the first attempt borrowed.)
enum Finished {
    AllOrNothing(Result<Outcomes, Option<(usize, HandlerError)>>),
    KeepApplied((Outcomes, Option<HandlerError>)),
}

/// Applies `events` in a new transaction, in `mode`, once its first
/// statement has recorded their inbox entries and told which ids it had not
/// seen (every id, without the inbox); `None` when the database failed
/// before any handler ran.
///
/// The transaction opens with the inbox insert in one round trip
/// ([`inbox::begin_recording`]); when that insert meets an event recorded
/// before, it is rolled back and the batch takes a `BEGIN` and
/// [`inbox::record_new`], which sort the duplicates out.
async fn recorded(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
    mode: Mode,
) -> Option<Finished> {
    let mut conn = ctx.pool.acquire().await.ok()?;
    let opening = if ctx.opts.use_inbox {
        inbox::begin_recording(&ctx.group_id, &inbox_entries(ctx, events))
    } else {
        None
    };
    if let Some((statement, ids)) = opening {
        let error = match Connection::begin_with(&mut *conn, statement).await {
            Ok(tx) => return Some(finish(ctx, events, mode, tx, ids).await),
            Err(e) => e,
        };
        if !inbox::recorded_before(&error) {
            tracing::debug!(%error, "batch transaction did not open");
            // Its state is unknown: do not hand it to anyone else.
            conn.close_on_drop();
            return None;
        }
        tracing::debug!("batch holds an event applied before; sorting duplicates out");
        // The failed insert left its transaction open (and aborted): end it
        // before the connection is used again.
        if sqlx::Executor::execute(&mut *conn, "ROLLBACK")
            .await
            .is_err()
        {
            conn.close_on_drop();
            return None;
        }
    }
    let mut tx = Connection::begin(&mut *conn).await.ok()?;
    let fresh = record_new(ctx, &mut tx, events).await.ok()?;
    Some(finish(ctx, events, mode, tx, fresh).await)
}

/// Hands an open batch transaction to the body of `mode`.
async fn finish(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
    mode: Mode,
    tx: Transaction<'_, Postgres>,
    fresh: HashSet<uuid::Uuid>,
) -> Finished {
    match mode {
        Mode::AllOrNothing => Finished::AllOrNothing(finish_all(ctx, events, tx, fresh).await),
        Mode::KeepApplied => Finished::KeepApplied(finish_keeping(ctx, events, tx, fresh).await),
    }
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
    group: &str,
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
                group,
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
    match recorded(ctx, events, Mode::KeepApplied).await {
        Some(Finished::KeepApplied(result)) => result,
        _ => (Vec::new(), None),
    }
}

/// [`apply_keeping_applied`] once its transaction is open and `fresh`
/// holds the ids the inbox had not seen.
async fn finish_keeping(
    ctx: &Context,
    events: &[(ConsumedEvent, &tracing::Span)],
    mut tx: Transaction<'_, Postgres>,
    fresh: HashSet<uuid::Uuid>,
) -> (Outcomes, Option<HandlerError>) {
    let (mut done, todo) = sort_out(ctx, events, fresh);
    let mut failure = None;
    if let Some((at, e)) = run_handlers(&ctx.group_id, &mut tx, events, &todo, &mut done).await {
        // Take the failed record and the ones not reached out of the
        // inbox; keep the ones before it.
        let undone: Vec<uuid::Uuid> = todo
            .iter()
            .filter(|&&(i, _)| i >= at)
            .map(|&(i, _)| events[i].0.envelope.event_id)
            .collect();
        if ctx.opts.use_inbox
            && inbox::forget(&mut tx, &ctx.group_id, &undone)
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

/// Records the records of `events` that have a handler in the inbox and
/// returns the ids it had not seen; without the inbox
/// ([`use_inbox`](crate::consumer::ConsumerOptions::use_inbox)) every one
/// of them is new.
async fn record_new(
    ctx: &Context,
    conn: &mut sqlx::PgConnection,
    events: &[(ConsumedEvent, &tracing::Span)],
) -> Result<HashSet<uuid::Uuid>, sqlx::Error> {
    let entries = inbox_entries(ctx, events);
    if ctx.opts.use_inbox {
        inbox::record_new(conn, &ctx.group_id, &entries).await
    } else {
        Ok(entries.iter().map(|e| e.event_id).collect())
    }
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

//! The batches in flight: the oldest rows not yet sent are read, encoded
//! and handed to the producer while earlier batches are acknowledged; then
//! each batch is settled in the order it was sent (rows to delete, or kept
//! for the next try). Rows the broker acknowledged are deleted by the next
//! read, in the same statement, or before the relay waits with nothing in
//! flight, whichever comes first.
//!
//! A row is not sent while a row of its topic and key is in an earlier
//! batch not yet settled. The client times a partition's records out
//! oldest first, each at its own deadline: had both been sent, a broker
//! back between the two deadlines would take the later record after the
//! earlier one failed, and the consumers would apply them out of order.
//! Rows of one key in one batch are handed to the producer back to back,
//! their deadlines microseconds apart.

use std::collections::{HashSet, VecDeque};

use rdkafka::producer::DeliveryFuture;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgListener;
use sqlx::{Postgres, Row};

use super::record::{delivered, publish_span};
use super::{CrashPoint, Relay};
use crate::envelope::Envelope;
use crate::error::CodecError;
use crate::outbox::StoredHeaders;
use crate::trace_context::TraceContext;

pub(super) struct Row_ {
    id: i64,
    topic: String,
    key: String,
    record: Option<Prepared>,
}

/// A batch handed to the producer, not yet settled.
pub(super) struct InFlight {
    rows: Vec<Row_>,
    /// Per row: its span and delivery, `None` for a row that cannot be
    /// encoded.
    sends: Vec<Option<(tracing::Span, Delivery)>>,
    /// Rows that cannot be encoded, with the reason.
    broken: Vec<(i64, String)>,
}

/// The broker's answer for one record, awaited or in.
enum Delivery {
    Waiting(DeliveryFuture),
    /// `(partition, offset)`, or why it was not acknowledged.
    Done(Result<(i32, i64), String>),
}

impl InFlight {
    /// Waits until the broker answered for every record of the batch.
    /// Cancel-safe: answers already in are kept, so a later call goes on
    /// from where a cancelled one stopped.
    async fn acknowledged(&mut self) {
        for (_, delivery) in self.sends.iter_mut().flatten() {
            if let Delivery::Waiting(f) = delivery {
                *delivery = Delivery::Done(delivered(f).await);
            }
        }
    }
}

/// The batches in flight, oldest first, and what went wrong since the
/// pipeline was last empty.
#[derive(Default)]
pub(super) struct Pipeline {
    pub(super) in_flight: VecDeque<InFlight>,
    /// The last read found less than a batch, and no notification came
    /// since: reading again would find nothing new. Every insert into the
    /// outbox notifies (a trigger), so a row committed later ends this.
    pub(super) drained: bool,
    /// Keys with a record the broker did not acknowledge: their later rows
    /// stay in the outbox until it is.
    pub(super) failed_keys: HashSet<String>,
    /// Records not acknowledged, or held back behind one of their key.
    pub(super) failed: usize,
    /// Stops sending: returned once the batches in flight are settled.
    pub(super) error: Option<BatchError>,
    /// Rows the broker acknowledged, not deleted yet: the next read deletes
    /// them in its statement, or [`Relay::delete_acknowledged`] before the
    /// relay waits, or when there are a batch's worth.
    pub(super) acknowledged: Vec<i64>,
    /// The last read held rows back behind a batch in flight with their
    /// topic and key: read again once a batch is settled.
    pub(super) held_back: bool,
}

impl Pipeline {
    /// The rows a read must skip: in flight, or acknowledged and about to
    /// be deleted.
    fn skipped_ids(&self) -> Vec<i64> {
        self.in_flight
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.id))
            .chain(self.acknowledged.iter().copied())
            .collect()
    }

    /// The topics and keys of the rows in flight: a row of one of them
    /// waits until that batch is settled.
    fn keys_in_flight(&self) -> HashSet<(&str, &str)> {
        self.in_flight
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| (r.topic.as_str(), r.key.as_str())))
            .collect()
    }
}

/// An encoded row waiting for its span and headers.
pub(super) struct Prepared {
    pub(super) envelope: Envelope,
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) trace: Option<TraceContext>,
}

impl Relay {
    /// One step of the pipeline: sends the next batch unless the window is
    /// full or the outbox was drained, otherwise settles the oldest batch
    /// in flight. While that batch is acknowledged and the window has room,
    /// a notification of new rows ends the wait, so they are read and sent
    /// at once. `Ok(false)` when there was nothing to do.
    pub(super) async fn step(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        pipe: &mut Pipeline,
        listener: &mut Option<PgListener>,
    ) -> Result<bool, BatchError> {
        let window = self.opts.max_in_flight_batches;
        if pipe.error.is_none() && pipe.in_flight.len() < window && !pipe.drained {
            match self.send_next(conn, pipe).await {
                Ok(Some(batch)) => {
                    pipe.in_flight.push_back(batch);
                    if pipe.in_flight.len() < window && !pipe.drained {
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
        let room = pipe.error.is_none() && pipe.in_flight.len() < window;
        let Some(oldest) = pipe.in_flight.front_mut() else {
            // Nothing in flight: the relay waits or backs off next, so the
            // acknowledged rows go now.
            self.delete_acknowledged(conn, pipe).await?;
            return match pipe.error.take() {
                Some(BatchError::Publish(e)) => Err(BatchError::Publish(format!(
                    "{} records not acknowledged or held back behind one of their key: {e}",
                    pipe.failed
                ))),
                Some(e) => Err(e),
                None => Ok(false),
            };
        };
        if let (true, Some(l)) = (room, listener.as_mut()) {
            tokio::select! {
                biased;
                woke = l.recv() => match woke {
                    Ok(_) => {
                        // One read covers every notification already in.
                        while l.next_buffered().is_some() {}
                        pipe.drained = false;
                        return Ok(true);
                    }
                    // The listener reconnects on its next call; until then
                    // settling waits for the batch alone.
                    Err(e) => tracing::debug!(error = %e, "outbox listener error while settling"),
                },
                () = oldest.acknowledged() => {}
            }
        }
        let oldest = pipe
            .in_flight
            .pop_front()
            .expect("the oldest batch was looked at above");
        self.settle(conn, oldest, pipe).await?;
        if std::mem::take(&mut pipe.held_back) {
            // The rows held back may go now.
            pipe.drained = false;
        }
        Ok(true)
    }

    /// Deletes the acknowledged rows not deleted yet.
    pub(super) async fn delete_acknowledged(
        &self,
        conn: &mut PoolConnection<Postgres>,
        pipe: &mut Pipeline,
    ) -> Result<(), BatchError> {
        if !pipe.acknowledged.is_empty() {
            delete_done(conn, &pipe.acknowledged).await?;
            pipe.acknowledged.clear();
        }
        Ok(())
    }

    /// Deletes the acknowledged rows and reads the oldest rows not in
    /// flight, in one statement; encodes them and hands them to the
    /// producer, but for rows whose topic and key are in a batch in flight
    /// (held back). `None` when there is nothing to send. Sets
    /// `pipe.drained` when the read took every row there was, or held rows
    /// back (read again after a settle or a notification, not at once).
    async fn send_next(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        pipe: &mut Pipeline,
    ) -> Result<Option<InFlight>, BatchError> {
        // Rows in flight are skipped by id, not by a cursor: a row whose
        // transaction committed late has a lower id than rows already sent
        // and must not wait until the pipeline drains. The rows deleted by
        // the statement are still in its snapshot, so they are skipped too.
        // The leader's connection plans every execution with its parameters
        // (see `Relay::try_lead`), so the planner sees the arrays (a hashed
        // lookup, not a scan of them) in a statement prepared once.
        let rows = sqlx::query(
            "WITH gone AS (DELETE FROM outbox WHERE id = ANY($3)) \
             SELECT id, event_id, topic, partition_key, envelope, headers FROM outbox \
             WHERE id <> ALL($2) ORDER BY id LIMIT $1",
        )
        .bind(self.opts.batch_size)
        .bind(pipe.skipped_ids())
        .bind(&pipe.acknowledged)
        .fetch_all(&mut **conn)
        .await?;
        pipe.acknowledged.clear();
        let busy = pipe.keys_in_flight();
        let mut batch = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        let mut held = 0;
        for row in &rows {
            let id: i64 = row.get("id");
            let topic: String = row.get("topic");
            let key: String = row.get("partition_key");
            if busy.contains(&(topic.as_str(), key.as_str())) {
                // After it, in this read, every row of its key is held too.
                held += 1;
                continue;
            }
            match self.to_record(row).await {
                Ok(record) => batch.push(Row_ {
                    id,
                    topic,
                    key,
                    record: Some(record),
                }),
                Err(e) if e.is_transient() => return Err(BatchError::Encode(e.to_string())),
                Err(e) => {
                    tracing::error!(outbox_id = id, error = %e, "outbox row cannot be encoded; moved to outbox_failed");
                    broken.push((id, e.to_string()));
                    batch.push(Row_ {
                        id,
                        topic,
                        key,
                        record: None,
                    });
                }
            }
        }
        drop(busy);
        // A short read took every row there was.
        pipe.drained = (rows.len() as i64) < self.opts.batch_size || held > 0;
        if held > 0 {
            pipe.held_back = true;
            tracing::debug!(
                held,
                "outbox rows held back behind a batch in flight with their topic and key"
            );
        }
        if batch.is_empty() {
            return Ok(None);
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
                    let delivery = match self.producer.send(&record) {
                        Ok(f) => Delivery::Waiting(f),
                        Err(e) => Delivery::Done(Err(e.to_string())),
                    };
                    (span, delivery)
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
    pub(super) async fn settle(
        &mut self,
        conn: &mut PoolConnection<Postgres>,
        mut batch: InFlight,
        pipe: &mut Pipeline,
    ) -> Result<(), BatchError> {
        batch.acknowledged().await;
        let InFlight {
            rows,
            sends,
            broken,
        } = batch;
        let mut done = Vec::with_capacity(rows.len());
        for (r, send) in rows.iter().zip(sends) {
            let outcome = match send {
                None => Ok(()),
                Some((span, delivery)) => {
                    let outcome = match delivery {
                        Delivery::Done(outcome) => outcome,
                        Delivery::Waiting(_) => unreachable!("every delivery was awaited above"),
                    };
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
        if done.is_empty() {
            return Ok(());
        }
        // A broken row stays in the outbox (like any row) while an earlier
        // row of its key is retried; it is moved only together with its
        // deletion, or the next attempt would insert it into outbox_failed
        // again and fail on its primary key, forever.
        let moved: Vec<&(i64, String)> =
            broken.iter().filter(|(id, _)| done.contains(id)).collect();
        if moved.is_empty() {
            // Deleted by the next read's statement (no round trip of its
            // own for the usual batch), or before the relay waits.
            pipe.acknowledged.extend(done);
            if pipe.acknowledged.len() as i64 >= self.opts.batch_size {
                self.delete_acknowledged(conn, pipe).await?;
            }
            return Ok(());
        }
        done.append(&mut pipe.acknowledged);
        let mut tx = sqlx::Acquire::begin(&mut **conn).await?;
        for (id, reason) in moved {
            sqlx::query!(
                "INSERT INTO outbox_failed (id, event_id, event_type, topic, partition_key, envelope, headers, created_at, reason) \
                 SELECT id, event_id, event_type, topic, partition_key, envelope, headers, created_at, $2 FROM outbox WHERE id = $1",
                id,
                reason
            )
            .execute(&mut *tx)
            .await?;
        }
        delete_done(&mut tx, &done).await?;
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

/// Deletes the rows the broker acknowledged.
async fn delete_done(conn: &mut sqlx::PgConnection, done: &[i64]) -> Result<(), sqlx::Error> {
    // Planned with its parameters on every call (the leader's connection
    // forces custom plans): a generic plan for `= ANY($1)` made while the
    // outbox was nearly empty scans the whole table.
    sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", done)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) enum BatchError {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, topic: &str, key: &str) -> Row_ {
        Row_ {
            id,
            topic: topic.to_owned(),
            key: key.to_owned(),
            record: None,
        }
    }

    fn batch(rows: Vec<Row_>) -> InFlight {
        InFlight {
            sends: rows.iter().map(|_| None).collect(),
            rows,
            broken: Vec::new(),
        }
    }

    #[test]
    fn a_key_is_busy_while_a_batch_with_it_is_in_flight_on_its_topic() {
        let mut pipe = Pipeline::default();
        assert!(pipe.keys_in_flight().is_empty());
        pipe.in_flight
            .push_back(batch(vec![row(1, "orders", "a"), row(2, "audit", "b")]));
        pipe.in_flight.push_back(batch(vec![row(3, "orders", "c")]));
        pipe.acknowledged.push(4);
        let busy = pipe.keys_in_flight();
        for held in [("orders", "a"), ("audit", "b"), ("orders", "c")] {
            assert!(busy.contains(&held), "{held:?} waits");
        }
        // The same key on another topic is another partition's order.
        for free in [("audit", "a"), ("orders", "b"), ("orders", "d")] {
            assert!(!busy.contains(&free), "{free:?} may go");
        }
        // Acknowledged rows hold nothing back; a settled batch frees its keys.
        pipe.in_flight.pop_front();
        let busy = pipe.keys_in_flight();
        assert_eq!(busy, HashSet::from([("orders", "c")]));
        assert_eq!(pipe.skipped_ids(), vec![3, 4]);
    }
}

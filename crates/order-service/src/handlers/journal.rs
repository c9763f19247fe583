//! Every event of the saga's topics → the order journal (the live
//! projection, see [`crate::db::journal`]), in its own consumer group so it
//! can be rebuilt or rewound without touching the saga's state; and, when
//! `ORDER_AUDIT_EVENT_COPIES` is on, the events it sees for the first time
//! recorded on the audit trail ([`recorded_events`]).

use std::collections::HashSet;

use async_trait::async_trait;
use orderflow_events::access::ORDER_JOURNAL;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::{HandlerError, OutboxError};
use orderflow_events::events::{AuditRecorded, RecordedEvent};
use orderflow_events::outbox::Rows;
use orderflow_events::{Envelope, EventType, TopicCatalog};
use sqlx::PgConnection;

use crate::db::journal::{self, JournalRow, Table};

/// Every event type of the streams the journal reads (the access table's
/// [`ORDER_JOURNAL`]: the saga's five, not the audit trail).
pub fn journal_event_types() -> Vec<EventType> {
    EventType::ALL
        .iter()
        .copied()
        .filter(|t| ORDER_JOURNAL.reads.contains(&t.stream()))
        .collect()
}

/// The `action` of the audit trail's record of business events
/// ([`recorded_events`]).
pub const EVENTS_RECORDED: &str = "events.recorded";

/// The `action` of one business event's copy as releases before
/// `AuditRecorded` v2 wrote them, one record per event (its details in
/// `detail`); `orderctl audit` still reads them.
pub const EVENT_RECORDED: &str = "event.recorded";

/// The most events one record holds (about 250 bytes each, so a record
/// stays far below the broker's message size).
pub const EVENTS_PER_RECORD: usize = 200;

/// The audit trail's record of business events: for each, who emitted
/// what, when, in which saga (its correlation id) and where the log held
/// it, so the events outlive their topics' retention on `audit-events` (7
/// years). One record for many events, because a record per event costs
/// the saga (measured: docs/benchmarks.md). Its own correlation id is a
/// new one: the events are of many orders. `orderctl audit` lists each
/// recorded event as the event itself, once.
pub fn recorded_events(events: &[&ConsumedEvent], source: &str) -> Envelope {
    let recorded: Vec<RecordedEvent> = events
        .iter()
        .map(|event| {
            let e = &event.envelope;
            RecordedEvent {
                event_id: e.event_id.to_string(),
                event_type: e.event_type().name().to_owned(),
                event_version: e.event_version,
                source: e.source.clone(),
                correlation_id: e.correlation_id.clone(),
                causation_id: e.causation_id.map(|c| c.to_string()),
                occurred_at: e.timestamp.timestamp_millis(),
                topic: event.origin.topic.clone(),
                partition: event.origin.partition,
                offset: event.origin.offset,
            }
        })
        .collect();
    Envelope::new(
        source,
        uuid::Uuid::now_v7().to_string(),
        AuditRecorded {
            action: EVENTS_RECORDED.to_owned(),
            actor: source.to_owned(),
            actor_roles: vec!["service".to_owned()],
            subject: "events".to_owned(),
            order_id: None,
            event_ids: recorded.iter().map(|r| r.event_id.clone()).collect(),
            detail: [("count".to_owned(), recorded.len().to_string())].into(),
            events: recorded,
        },
    )
}

/// Writes each event's journal row, a batch in one statement, and (with
/// `audit_copies`) enqueues the audit trail's record of every event whose
/// row is new ([`recorded_events`]; one record per batch, or per
/// [`EVENTS_PER_RECORD`]), in the same transaction: an event is recorded
/// exactly when its row is new, so once.
pub struct OnJournalEvents {
    /// Where the records go (`audit-events`).
    pub topics: TopicCatalog,
    /// The service's `source`.
    pub source: &'static str,
    /// Whether to record the events on the audit trail
    /// (`ORDER_AUDIT_EVENT_COPIES`).
    pub audit_copies: bool,
}

#[async_trait]
impl BatchHandler for OnJournalEvents {
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let fail = |e: String| (0, HandlerError::permanent(e));
        let rows: Vec<JournalRow> = events
            .iter()
            .map(|(e, _)| JournalRow::new(&e.envelope, &e.origin, e.key.as_deref()))
            .collect();
        let mut new: HashSet<uuid::Uuid> = journal::insert(tx, Table::Live, &rows)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?
            .into_iter()
            .collect();
        if !self.audit_copies {
            return Ok(());
        }
        // Each event whose row is new, once (a batch may hold one event
        // twice: a record and its redriven copy).
        let first: Vec<&ConsumedEvent> = events
            .iter()
            .map(|(e, _)| *e)
            .filter(|e| new.remove(&e.envelope.event_id))
            .collect();
        let mut copies = Rows::default();
        for chunk in first.chunks(EVENTS_PER_RECORD) {
            let record = recorded_events(chunk, self.source);
            copies
                .push(&self.topics, &record.correlation_id, &record, None)
                .map_err(|err| fail(err.to_string()))?;
        }
        copies.insert(tx).await.map_err(|e| match e {
            OutboxError::Database(db) => HandlerError::batch_failure(events.len(), db),
            other => fail(other.to_string()),
        })?;
        Ok(())
    }
}

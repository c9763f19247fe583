//! Every event of the saga's topics → the order journal (the live
//! projection, see [`crate::db::journal`]), in its own consumer group so it
//! can be rebuilt or rewound without touching the saga's state; and, when
//! `ORDER_AUDIT_EVENT_COPIES` is on, for each event the journal sees for
//! the first time, its copy on the audit trail ([`audit_copy`]).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::SecondsFormat;
use orderflow_events::access::ORDER_JOURNAL;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::{HandlerError, OutboxError};
use orderflow_events::events::AuditRecorded;
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

/// The `action` of a business event's copy on the audit trail.
pub const EVENT_RECORDED: &str = "event.recorded";

/// The audit trail's copy of a business event: who emitted what, when,
/// where the log holds it, in the event's saga (its correlation id), so
/// the event outlives its topic's retention on `audit-events` (7 years).
/// `orderctl audit` shows a copy as the event itself, once.
pub fn audit_copy(event: &ConsumedEvent, source: &str) -> Envelope {
    let e = &event.envelope;
    let mut detail = std::collections::BTreeMap::from([
        ("eventType".to_owned(), e.event_type().name().to_owned()),
        ("eventVersion".to_owned(), e.event_version.to_string()),
        (
            "occurredAt".to_owned(),
            e.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
        ),
        ("topic".to_owned(), event.origin.topic.clone()),
        ("partition".to_owned(), event.origin.partition.to_string()),
        ("offset".to_owned(), event.origin.offset.to_string()),
    ]);
    if let Some(c) = e.causation_id {
        detail.insert("causationId".to_owned(), c.to_string());
    }
    Envelope::new(
        source,
        e.correlation_id.clone(),
        AuditRecorded {
            action: EVENT_RECORDED.to_owned(),
            actor: e.source.clone(),
            actor_roles: vec!["service".to_owned()],
            subject: format!("event:{}", e.event_type().name()),
            order_id: None,
            event_ids: vec![e.event_id.to_string()],
            detail,
        },
    )
}

/// Writes each event's journal row, a batch in one statement, and (with
/// `audit_copies`) enqueues the audit copy of every event whose row is
/// new, in the same transaction: a copy exists exactly when the row does,
/// once per event.
pub struct OnJournalEvents {
    /// Where the copies go (`audit-events`).
    pub topics: TopicCatalog,
    /// The service's `source`.
    pub source: &'static str,
    /// Whether to write the copies (`ORDER_AUDIT_EVENT_COPIES`).
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
        let new: HashSet<uuid::Uuid> = journal::insert(tx, Table::Live, &rows)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?
            .into_iter()
            .collect();
        if !self.audit_copies {
            return Ok(());
        }
        let mut copies = Rows::default();
        for (e, _) in events {
            if new.contains(&e.envelope.event_id) {
                let copy = audit_copy(e, self.source);
                copies
                    .push(&self.topics, &e.envelope.correlation_id, &copy, None)
                    .map_err(|err| fail(err.to_string()))?;
            }
        }
        copies.insert(tx).await.map_err(|e| match e {
            OutboxError::Database(db) => HandlerError::batch_failure(events.len(), db),
            other => fail(other.to_string()),
        })?;
        Ok(())
    }
}

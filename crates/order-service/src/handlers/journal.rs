//! Every event of the saga's topics → the order journal (the live
//! projection, see [`crate::db::journal`]), in its own consumer group so it
//! can be rebuilt or rewound without touching the saga's state.

use async_trait::async_trait;
use orderflow_events::access::ORDER_JOURNAL;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::EventType;
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

/// Writes each event's journal row; a batch in one statement.
pub struct OnJournalEvents;

#[async_trait]
impl BatchHandler for OnJournalEvents {
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let rows: Vec<JournalRow> = events
            .iter()
            .map(|(e, _)| JournalRow::new(&e.envelope, &e.origin, e.key.as_deref()))
            .collect();
        journal::insert(tx, Table::Live, &rows)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?;
        Ok(())
    }
}

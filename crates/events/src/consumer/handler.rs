//! What a service plugs into the consumer: [`Handler`] (one event at a
//! time, or a batch of one type) and [`BatchHandler`] (a batch mixing
//! types), and the [`ConsumedEvent`] they are given.

use async_trait::async_trait;
use sqlx::PgConnection;

use crate::envelope::Envelope;
use crate::error::HandlerError;
use crate::inbox::Origin;
use crate::topics::TopicCatalog;
use crate::trace_context::TraceContext;

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

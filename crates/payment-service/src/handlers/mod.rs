//! One handler per consumed event. Each runs inside the consumer's
//! transaction (which also records the event in the inbox), so the payment
//! row and its outgoing event commit together.

mod inventory_reserved;
mod order_cancelled;

pub use inventory_reserved::OnInventoryReserved;
pub use order_cancelled::OnOrderCancelled;

use orderflow_events::consumer::ConsumedEvent;
use orderflow_events::error::{HandlerError, OutboxError};
use orderflow_events::{outbox, Envelope, Event, TopicCatalog};
use sqlx::PgConnection;

use crate::SOURCE;

/// Writes the event caused by `cause` to the outbox, keyed by the order id,
/// continuing the cause's trace.
async fn emit(
    tx: &mut PgConnection,
    catalog: &TopicCatalog,
    cause: &ConsumedEvent,
    order_id: &str,
    payload: impl Into<Event>,
) -> Result<(), HandlerError> {
    let envelope = Envelope::caused_by(&cause.envelope, SOURCE, payload);
    let trace = cause.trace.as_ref().map(|t| t.child());
    outbox::enqueue(tx, catalog, order_id, &envelope, trace.as_ref())
        .await
        .map_err(|e| match e {
            OutboxError::Database(e) => e.into(),
            OutboxError::Codec(e) => HandlerError::permanent(e.to_string()),
        })
}

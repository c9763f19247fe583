//! One handler per consumed event. Each runs inside the consumer's
//! transaction (which also records the event in the inbox), so its stock
//! moves, its reservation row and its outgoing event commit together.

mod order_created;
mod release;
mod shipping_dispatched;

pub use order_created::OnOrderCreated;
pub use release::{OnOrderCancelled, OnPaymentFailed};
pub use shipping_dispatched::OnShippingDispatched;

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

/// A per-SKU quantity as the database's `INT`. Quantities are bounded by
/// stock levels, which are `INT`, so only a corrupted row can fail this.
fn units(sku: &str, quantity: i64) -> Result<i32, HandlerError> {
    i32::try_from(quantity).map_err(|_| {
        HandlerError::permanent(format!("quantity {quantity} of {sku} is out of range"))
    })
}

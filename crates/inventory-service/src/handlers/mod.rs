//! One handler per consumed event. Each runs inside the consumer's
//! transaction (which also records the event in the inbox), so its stock
//! moves, its reservation row and its outgoing event commit together.

mod order_created;
mod release;
mod shipping_dispatched;

pub use order_created::OnOrderCreated;
pub use release::{OnOrderCancelled, OnPaymentFailed};
pub use shipping_dispatched::OnShippingDispatched;

use orderflow_events::error::HandlerError;

/// A per-SKU quantity as the database's `INT`. Quantities are bounded by
/// stock levels, which are `INT`, so only a corrupted row can fail this.
fn units(sku: &str, quantity: i64) -> Result<i32, HandlerError> {
    i32::try_from(quantity).map_err(|_| {
        HandlerError::permanent(format!("quantity {quantity} of {sku} is out of range"))
    })
}

//! Event handlers: one per consumed event type.

mod order_cancellation_requested;
mod order_cancelled;
mod payment_processed;

pub use order_cancellation_requested::OnOrderCancellationRequested;
pub use order_cancelled::OnOrderCancelled;
pub use payment_processed::OnPaymentProcessed;

use orderflow_events::error::{HandlerError, OutboxError};

/// Maps an outbox failure to the consumer's retry classification.
pub fn outbox_error(e: OutboxError) -> HandlerError {
    match e {
        OutboxError::Database(db) => db.into(),
        OutboxError::Codec(c) => HandlerError::permanent(format!("cannot encode the event: {c}")),
    }
}

/// Maps a read failure to the consumer's retry classification.
pub fn db_error(e: crate::db::DbError) -> HandlerError {
    match e {
        crate::db::DbError::Sqlx(e) => e.into(),
        crate::db::DbError::Corrupt(c) => HandlerError::permanent(c.to_string()),
    }
}

//! `OrderCancelled` → cancellation e-mail.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::OrderCancelled;
use sqlx::PgConnection;

use super::Notifier;
use crate::email;

/// Sends the cancellation e-mail of a cancelled order.
pub struct OrderCancelledHandler(pub Notifier);

#[async_trait]
impl Handler for OrderCancelledHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<OrderCancelled>()?;
        self.0.notify(tx, event, email::cancellation(p)).await
    }
}

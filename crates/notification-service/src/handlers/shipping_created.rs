//! `ShippingCreated` → order confirmation e-mail.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::ShippingCreated;
use sqlx::PgConnection;

use super::Notifier;
use crate::email;

/// Sends the confirmation e-mail of a shipped order.
pub struct ShippingCreatedHandler(pub Notifier);

#[async_trait]
impl Handler for ShippingCreatedHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<ShippingCreated>()?;
        self.0.notify(tx, event, email::confirmation(p)).await
    }
}

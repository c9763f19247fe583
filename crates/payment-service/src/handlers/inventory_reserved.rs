//! `InventoryReserved`: charge the order, once.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{InventoryReserved, PaymentFailed, PaymentProcessed};
use orderflow_events::TopicCatalog;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::{self, NewPayment, Status};
use crate::gateway::{self, Outcome};

/// Charges a reserved order → `PaymentProcessed` or `PaymentFailed`.
pub struct OnInventoryReserved {
    /// Topic names.
    pub catalog: TopicCatalog,
    /// Largest amount the gateway accepts (minor units).
    pub max_amount: i64,
}

#[async_trait]
impl Handler for OnInventoryReserved {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let r = event.envelope.payload::<InventoryReserved>()?;
        // The simulated gateway has no side effect, so deciding before the
        // insert is safe; the row decides whether the outcome takes effect.
        let outcome = gateway::charge(&r.payment_token, r.total, self.max_amount);
        let payment_id = Uuid::new_v4();
        let (status, decline) = match &outcome {
            Outcome::Approved => (Status::Processed, None),
            Outcome::Declined(d) => (Status::Declined, Some(d)),
        };
        let inserted = db::insert(
            tx,
            &NewPayment {
                order_id: &r.order_id,
                payment_id,
                status,
                amount: r.total,
                currency: Some(&r.currency),
                payment_token: Some(&r.payment_token),
                decline_code: decline.map(|d| d.code),
                reason: decline.map(|d| d.message.as_str()),
            },
        )
        .await?;
        if !inserted {
            // Already charged (a redelivery under a new event id) or voided
            // by an earlier cancellation: never charge twice or after it.
            tracing::info!(order_id = %r.order_id, "order already has a payment or was cancelled; not charging");
            return Ok(());
        }
        let payment_id = payment_id.to_string();
        match outcome {
            Outcome::Approved => {
                tracing::info!(order_id = %r.order_id, %payment_id, amount = r.total, "payment processed");
                let processed = PaymentProcessed {
                    order_id: r.order_id.clone(),
                    payment_id,
                    amount: r.total,
                    currency: r.currency.clone(),
                    customer_id: r.customer_id.clone(),
                    email: r.email.clone(),
                    shipping_address: r.shipping_address.clone(),
                    items: r.items.clone(),
                };
                event
                    .emit(tx, &self.catalog, crate::SOURCE, &r.order_id, processed)
                    .await
            }
            Outcome::Declined(d) => {
                tracing::info!(order_id = %r.order_id, %payment_id, decline_code = d.code, "payment declined");
                let failed = PaymentFailed {
                    order_id: r.order_id.clone(),
                    payment_id,
                    amount: r.total,
                    currency: r.currency.clone(),
                    reason: d.message,
                    decline_code: d.code.to_owned(),
                };
                event
                    .emit(tx, &self.catalog, crate::SOURCE, &r.order_id, failed)
                    .await
            }
        }
    }
}

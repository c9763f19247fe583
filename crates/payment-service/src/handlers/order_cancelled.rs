//! `OrderCancelled`: refund a charge, or make sure none happens.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{OrderCancelled, PaymentRefunded};
use orderflow_events::TopicCatalog;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::{self, NewPayment, Status};

/// Refunds a processed payment (`PaymentRefunded`); with no payment yet,
/// leaves a `VOIDED` tombstone so a later `InventoryReserved` charges
/// nothing. A declined, refunded or voided payment needs nothing.
pub struct OnOrderCancelled {
    /// Topic names.
    pub catalog: TopicCatalog,
}

#[async_trait]
impl Handler for OnOrderCancelled {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let c = event.envelope.payload::<OrderCancelled>()?;
        let reason = format!("order cancelled: {}", c.reason);
        let voided = db::insert(
            tx,
            &NewPayment {
                order_id: &c.order_id,
                payment_id: Uuid::new_v4(),
                status: Status::Voided,
                amount: 0,
                currency: None,
                payment_token: None,
                decline_code: None,
                reason: Some(&reason),
            },
        )
        .await?;
        if voided {
            tracing::info!(order_id = %c.order_id, "cancelled before any charge; payment voided");
            return Ok(());
        }
        let Some(refund) = db::refund(tx, &c.order_id, &reason).await? else {
            tracing::debug!(order_id = %c.order_id, "nothing to refund");
            return Ok(());
        };
        tracing::info!(order_id = %c.order_id, payment_id = %refund.payment_id, amount = refund.amount, "payment refunded");
        let refunded = PaymentRefunded {
            order_id: c.order_id.clone(),
            payment_id: refund.payment_id.to_string(),
            amount: refund.amount,
            currency: refund.currency.unwrap_or_default(),
            reason,
        };
        event
            .emit(tx, &self.catalog, crate::SOURCE, &c.order_id, refunded)
            .await
    }
}

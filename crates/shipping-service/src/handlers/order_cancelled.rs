//! `OrderCancelled` → cancel a shipment that has not left, or leave a
//! tombstone so a later `PaymentProcessed` creates none. Emits nothing.
//!
//! A cancellation that could race a dispatch (the customer's, the
//! deadline's) reaches this service first as `OrderCancellationRequested`
//! and is decided there; its `OrderCancelled` then finds the shipment
//! cancelled or voided already. The ones that arrive here first (out of
//! stock, payment declined) come before any payment, so before any
//! shipment.

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::OrderCancelled;
use sqlx::PgConnection;

use super::db_error;
use crate::db::{self, Record};
use crate::domain::{self, Status};

/// Applies order cancellations.
pub struct OnOrderCancelled;

#[async_trait]
impl Handler for OnOrderCancelled {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<OrderCancelled>()?;
        let order_id = p.order_id.as_str();
        let env = &event.envelope;
        if db::insert_tombstone(tx, order_id, env).await? {
            tracing::info!(
                order_id,
                "order cancelled before any shipment; tombstone left"
            );
            return Ok(());
        }
        let Some(Record::Shipment(shipment)) = db::lock(tx, order_id).await.map_err(db_error)?
        else {
            tracing::debug!(order_id, "order already voided");
            return Ok(());
        };
        if domain::cancels(shipment.status) {
            let now = Utc::now().trunc_subsecs(3);
            db::set_status(tx, order_id, Status::Cancelled, now, env.event_id)
                .await
                .map_err(db_error)?;
            tracing::info!(order_id, "shipment cancelled");
        } else if shipment.status == Status::Cancelled {
            tracing::debug!(order_id, "shipment already cancelled");
        } else {
            tracing::warn!(
                order_id,
                status = %shipment.status,
                "order cancelled after the shipment left; shipment unchanged"
            );
        }
        Ok(())
    }
}

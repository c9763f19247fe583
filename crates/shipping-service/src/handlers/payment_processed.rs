//! `PaymentProcessed` → create the shipment → `ShippingCreated`.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{PaymentProcessed, ShippingCreated};
use orderflow_events::{outbox, Envelope, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use super::outbox_error;
use crate::db::{self, NewShipment};
use crate::domain;
use crate::SOURCE;

/// Tracking numbers tried before giving up (a collision among 10^12 is
/// already unlikely once).
const TRACKING_ATTEMPTS: usize = 5;

/// Creates the shipment of a paid order.
pub struct PaymentProcessedHandler {
    /// Topic names.
    pub catalog: TopicCatalog,
    /// Carrier named on every shipment.
    pub carrier: String,
}

#[async_trait]
impl Handler for PaymentProcessedHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<PaymentProcessed>()?;
        let order_id = p.order_id.as_str();
        let shipment_id = Uuid::now_v7();
        let label_url = domain::label_url(order_id);
        for _ in 0..TRACKING_ATTEMPTS {
            let tracking_number = domain::tracking_number(&mut rand::thread_rng());
            let envelope = Envelope::caused_by(
                &event.envelope,
                SOURCE,
                ShippingCreated {
                    order_id: p.order_id.clone(),
                    shipment_id: shipment_id.to_string(),
                    tracking_number: tracking_number.clone(),
                    carrier: self.carrier.clone(),
                    label_url: label_url.clone(),
                    email: p.email.clone(),
                    recipient_name: p.shipping_address.name.clone(),
                    items: p.items.clone(),
                },
            );
            let inserted = db::insert_created(
                tx,
                &NewShipment {
                    order_id,
                    shipment_id,
                    tracking_number: &tracking_number,
                    carrier: &self.carrier,
                    label_url: &label_url,
                    recipient: &p.shipping_address,
                    email: &p.email,
                    items: &p.items,
                    correlation_id: &event.envelope.correlation_id,
                    event_id: envelope.event_id,
                    metadata: &event.envelope.metadata,
                },
            )
            .await?;
            if inserted {
                let trace = event.trace.as_ref().map(|t| t.child());
                outbox::enqueue(tx, &self.catalog, order_id, &envelope, trace.as_ref())
                    .await
                    .map_err(outbox_error)?;
                tracing::info!(order_id, %tracking_number, "shipment created");
                return Ok(());
            }
            if db::exists(tx, order_id).await? {
                // Created before, or the order was cancelled first (tombstone).
                tracing::info!(
                    order_id,
                    "shipment exists or order cancelled; nothing to create"
                );
                return Ok(());
            }
            tracing::warn!(order_id, %tracking_number, "tracking number taken; drawing another");
        }
        Err(HandlerError::retryable(
            "no free tracking number after several attempts",
        ))
    }
}

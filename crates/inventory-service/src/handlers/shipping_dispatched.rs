//! `ShippingDispatched`: the reserved units leave the warehouse.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::ShippingDispatched;
use orderflow_events::outbox;
use sqlx::PgConnection;

use super::units;
use crate::db::{self, Movement, Moves};
use crate::reservation::{requested_per_sku, Status};

/// Moves a held reservation from `reserved` to `shipped` (`SHIPPED`). Emits
/// nothing.
pub struct OnShippingDispatched;

#[async_trait]
impl Handler for OnShippingDispatched {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let dispatched = event.envelope.payload::<ShippingDispatched>()?;
        let order_id = dispatched.order_id.as_str();
        let reservation = match db::lock_reservation(tx, order_id).await? {
            Some(r) if r.status == Status::Reserved => r,
            other => {
                tracing::warn!(
                    order_id,
                    status = ?other.map(|r| r.status),
                    "shipment dispatched without a held reservation; stock unchanged"
                );
                return Ok(());
            }
        };
        let per_sku = requested_per_sku(&reservation.items);
        let skus: Vec<String> = per_sku.keys().cloned().collect();
        db::lock_stock(tx, &skus).await?;
        let mut moves = Moves::new(Movement::Ship);
        for (sku, &quantity) in &per_sku {
            moves.push(sku, units(sku, quantity)?);
        }
        db::settle_reservation(
            tx,
            order_id,
            Status::Shipped,
            None,
            moves,
            outbox::Rows::default(),
        )
        .await?;
        tracing::info!(order_id, "reserved stock shipped");
        Ok(())
    }
}

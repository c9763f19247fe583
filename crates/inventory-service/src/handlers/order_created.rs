//! `OrderCreated`: reserve every line of the order, or none.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{
    InventoryReservationFailed, InventoryReserved, OrderCreated, StockLine,
};
use orderflow_events::TopicCatalog;
use sqlx::PgConnection;

use super::units;
use crate::db::{self, Movement};
use crate::reservation::{decide, invalid_lines, requested_per_sku, Decision, Status};

/// Reserves stock for a new order → `InventoryReserved` or
/// `InventoryReservationFailed`.
pub struct OnOrderCreated {
    /// Topic names.
    pub catalog: TopicCatalog,
}

#[async_trait]
impl Handler for OnOrderCreated {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let order = event.envelope.payload::<OrderCreated>()?;
        let lines: Vec<StockLine> = order
            .items
            .iter()
            .map(|l| StockLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
            })
            .collect();
        if let Some(problem) = invalid_lines(&lines) {
            return Err(HandlerError::permanent(format!(
                "OrderCreated for order {}: {problem}",
                order.order_id
            )));
        }
        if db::reservation_exists(tx, &order.order_id).await? {
            tracing::debug!(order_id = %order.order_id, "order already has a reservation; nothing to do");
            return Ok(());
        }

        let requested = requested_per_sku(&lines);
        let skus: Vec<String> = requested.keys().cloned().collect();
        // Rows stay locked until the transaction ends: concurrent orders for
        // the same SKUs wait here and then see the stock this one left.
        let available = db::lock_stock(tx, &skus).await?;
        match decide(&requested, &available) {
            Decision::Reserve(per_sku) => {
                if !db::insert_reservation(tx, &order.order_id, Status::Reserved, &lines, None)
                    .await?
                {
                    return Ok(());
                }
                for (sku, &quantity) in &per_sku {
                    db::move_units(tx, sku, units(sku, quantity)?, Movement::Reserve).await?;
                }
                tracing::info!(order_id = %order.order_id, skus = ?skus, "stock reserved");
                let reserved = InventoryReserved {
                    order_id: order.order_id.clone(),
                    items: lines,
                    customer_id: order.customer_id.clone(),
                    email: order.email.clone(),
                    total: order.total,
                    currency: order.currency.clone(),
                    payment_token: order.payment_token.clone(),
                    shipping_address: order.shipping_address.clone(),
                };
                event
                    .emit(tx, &self.catalog, crate::SOURCE, &order.order_id, reserved)
                    .await
            }
            Decision::Fail { reason, skus } => {
                if !db::insert_reservation(
                    tx,
                    &order.order_id,
                    Status::Failed,
                    &lines,
                    Some(&reason),
                )
                .await?
                {
                    return Ok(());
                }
                tracing::info!(order_id = %order.order_id, %reason, "reservation failed");
                let failed = InventoryReservationFailed {
                    order_id: order.order_id.clone(),
                    reason,
                    skus,
                };
                event
                    .emit(tx, &self.catalog, crate::SOURCE, &order.order_id, failed)
                    .await
            }
        }
    }
}

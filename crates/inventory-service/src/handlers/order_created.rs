//! `OrderCreated`: reserve every line of the order, or none.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{
    InventoryReservationFailed, InventoryReserved, OrderCreated, StockLine,
};
use orderflow_events::{outbox, TopicCatalog};
use sqlx::PgConnection;

use super::units;
use crate::db::{self, Movement, Moves};
use crate::reservation::{decide, invalid_lines, requested_per_sku, Decision, Status};
use crate::SOURCE;

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
        let requested = requested_per_sku(&lines);
        let skus: Vec<String> = requested.keys().cloned().collect();
        // Rows stay locked until the transaction ends: concurrent orders for
        // the same SKUs wait here and then see the stock this one left. The
        // writes that follow are one statement, so the locks are held for
        // two round trips and the commit.
        let available = db::lock_stock(tx, &skus).await?;
        let mut moves = Moves::new(Movement::Reserve);
        let mut events = outbox::Rows::default();
        let (status, reason) = match decide(&requested, &available) {
            Decision::Reserve(per_sku) => {
                for (sku, &quantity) in &per_sku {
                    moves.push(sku, units(sku, quantity)?);
                }
                let reserved = InventoryReserved {
                    order_id: order.order_id.clone(),
                    items: lines.clone(),
                    customer_id: order.customer_id.clone(),
                    email: order.email.clone(),
                    total: order.total,
                    currency: order.currency.clone(),
                    payment_token: order.payment_token.clone(),
                    shipping_address: order.shipping_address.clone(),
                };
                event.follow_up(
                    &mut events,
                    &self.catalog,
                    SOURCE,
                    &order.order_id,
                    reserved,
                )?;
                (Status::Reserved, None)
            }
            Decision::Fail { reason, skus } => {
                let failed = InventoryReservationFailed {
                    order_id: order.order_id.clone(),
                    reason: reason.clone(),
                    skus,
                };
                event.follow_up(&mut events, &self.catalog, SOURCE, &order.order_id, failed)?;
                (Status::Failed, Some(reason))
            }
        };
        let written = db::insert_reservation(
            tx,
            &order.order_id,
            status,
            &lines,
            reason.as_deref(),
            moves,
            events,
        )
        .await?;
        if !written {
            tracing::debug!(order_id = %order.order_id, "order already has a reservation; nothing to do");
        } else if let Some(reason) = reason {
            tracing::info!(order_id = %order.order_id, %reason, "reservation failed");
        } else {
            tracing::info!(order_id = %order.order_id, skus = ?skus, "stock reserved");
        }
        Ok(())
    }
}

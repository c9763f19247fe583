//! `PaymentFailed` and `OrderCancelled`: give a held reservation back.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{InventoryReleased, OrderCancelled, PaymentFailed};
use orderflow_events::{outbox, TopicCatalog};
use sqlx::PgConnection;

use super::units;
use crate::db::{self, Movement, Moves};
use crate::reservation::{requested_per_sku, Status};

/// Releases the reservation of an order whose payment failed.
pub struct OnPaymentFailed {
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// Releases the reservation of a cancelled order.
pub struct OnOrderCancelled {
    /// Topic names.
    pub catalog: TopicCatalog,
}

#[async_trait]
impl Handler for OnPaymentFailed {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let failed = event.envelope.payload::<PaymentFailed>()?;
        let reason = format!("payment failed: {}", failed.reason);
        release(tx, &self.catalog, event, &failed.order_id, reason).await
    }
}

#[async_trait]
impl Handler for OnOrderCancelled {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let cancelled = event.envelope.payload::<OrderCancelled>()?;
        let reason = format!("order cancelled: {}", cancelled.reason);
        release(tx, &self.catalog, event, &cancelled.order_id, reason).await
    }
}

/// A `RESERVED` reservation goes back to `available` (`RELEASED`,
/// `InventoryReleased`); in any other state (none, failed, already released
/// or shipped) there is nothing to give back.
async fn release(
    tx: &mut PgConnection,
    catalog: &TopicCatalog,
    event: &ConsumedEvent,
    order_id: &str,
    reason: String,
) -> Result<(), HandlerError> {
    // Locking the reservation row serialises the two causes (they arrive on
    // different topics and may be handled at the same time): the second
    // finds RELEASED.
    let reservation = match db::lock_reservation(tx, order_id).await? {
        Some(r) if r.status == Status::Reserved => r,
        other => {
            tracing::debug!(
                order_id,
                status = ?other.map(|r| r.status),
                "no reservation held; nothing to release"
            );
            return Ok(());
        }
    };
    let per_sku = requested_per_sku(&reservation.items);
    let skus: Vec<String> = per_sku.keys().cloned().collect();
    db::lock_stock(tx, &skus).await?;
    let mut moves = Moves::new(Movement::Release);
    for (sku, &quantity) in &per_sku {
        moves.push(sku, units(sku, quantity)?);
    }
    let released = InventoryReleased {
        order_id: order_id.to_owned(),
        items: reservation.items,
        reason: reason.clone(),
    };
    let mut events = outbox::Rows::default();
    event.follow_up(&mut events, catalog, crate::SOURCE, order_id, released)?;
    db::settle_reservation(tx, order_id, Status::Released, Some(&reason), moves, events).await?;
    tracing::info!(order_id, %reason, "reservation released");
    Ok(())
}

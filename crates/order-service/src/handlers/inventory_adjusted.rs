//! `InventoryAdjusted` → the order service's copy of the SKU catalogue.

use async_trait::async_trait;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::InventoryAdjusted;
use sqlx::PgConnection;

use crate::db;

/// `InventoryAdjusted`: remembers the SKU, its availability and its price.
pub struct OnInventoryAdjusted;

#[async_trait]
impl Handler for OnInventoryAdjusted {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<InventoryAdjusted>()?;
        if p.sku.is_empty() {
            return Err(HandlerError::permanent(
                "InventoryAdjusted with an empty SKU",
            ));
        }
        let entry = db::CatalogEntry {
            available: p.available,
            price: p.price,
            currency: p.currency.clone(),
        };
        db::upsert_catalog(tx, &p.sku, &entry, event.envelope.timestamp).await?;
        tracing::debug!(sku = %p.sku, available = p.available, "catalogue updated");
        Ok(())
    }
}

//! The orderflow inventory service: stock per SKU, set over HTTP and
//! reserved, released and shipped by the order saga.
//!
//! - `PUT /inventory/{sku}` sets the units available (`InventoryAdjusted`);
//!   `GET /inventory/{sku}` reads the stock.
//! - `OrderCreated` → every line reserved (`InventoryReserved`) or none
//!   (`InventoryReservationFailed`).
//! - `PaymentFailed`, `OrderCancelled` → a held reservation is released
//!   (`InventoryReleased`).
//! - `ShippingDispatched` → the reserved units are shipped.
//!
//! See `docs/saga.md` for how this fits the saga.

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod handlers;

use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "inventory-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Name, port and migrations, for
/// [`orderflow_service::run`].
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "inventory",
        source: SOURCE,
        default_port: 8082,
        migrator: &MIGRATOR,
    }
}

/// The service's routes and consumer.
pub fn build(ctx: &Context, _settings: &config::Settings) -> anyhow::Result<Parts> {
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        catalog: ctx.catalog.clone(),
    });
    // Batches (the consumer's default) are applied in three statements,
    // each locking its rows in key order: see `handlers`.
    let consumer = ctx.consumer().on_each(
        &handlers::EVENT_TYPES,
        handlers::OnSagaEvents {
            catalog: ctx.catalog.clone(),
        },
    );
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: Vec::new(),
    })
}

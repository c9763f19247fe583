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
pub mod db;
pub mod handlers;
pub mod reservation;

use orderflow_events::consumer::{ConsumerOptions, EventConsumer};
use orderflow_events::EventType;
use orderflow_service::{Context, Parts};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "inventory-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The service's routes and consumer.
pub fn build(ctx: &Context) -> anyhow::Result<Parts> {
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        catalog: ctx.catalog.clone(),
    });
    let catalog = || ctx.catalog.clone();
    let consumer = EventConsumer::new(
        &ctx.kafka,
        &ctx.consumer_group,
        ctx.pool.clone(),
        ctx.codec.clone(),
        ctx.catalog.clone(),
    )
    // One record per transaction: orders of different partitions reserve
    // the same SKUs, and a batch would hold those stock rows' locks for the
    // whole batch (and could deadlock with another partition's batch).
    .with_options(ConsumerOptions {
        max_batch: 1,
        ..ConsumerOptions::default()
    })
    .on(
        EventType::OrderCreated,
        handlers::OnOrderCreated { catalog: catalog() },
    )
    .on(
        EventType::OrderCancelled,
        handlers::OnOrderCancelled { catalog: catalog() },
    )
    .on(
        EventType::PaymentFailed,
        handlers::OnPaymentFailed { catalog: catalog() },
    )
    .on(
        EventType::ShippingDispatched,
        handlers::OnShippingDispatched,
    );
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: Vec::new(),
    })
}

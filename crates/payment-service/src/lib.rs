//! The orderflow payment service: charges reserved orders through a
//! simulated, deterministic gateway ([`domain::gateway`]) and refunds cancelled ones.
//!
//! - `InventoryReserved` → `PaymentProcessed` or `PaymentFailed`, at most
//!   once per order and never after a cancellation was seen.
//! - `OrderCancelled` → a processed payment is refunded (`PaymentRefunded`);
//!   with no payment yet, a `VOIDED` tombstone stops a later charge.
//! - `GET /payments/{orderId}` shows an order's payment.
//!
//! See `docs/saga.md` for how this fits the saga.

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod handlers;

use orderflow_events::EventType;
use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "payment-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Name, port and migrations, for
/// [`orderflow_service::run`].
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "payment",
        source: SOURCE,
        default_port: 8083,
        migrator: &MIGRATOR,
    }
}

/// The service's routes and consumer.
pub fn build(ctx: &Context, settings: &config::Settings) -> anyhow::Result<Parts> {
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        catalog: ctx.catalog.clone(),
    });
    let consumer = ctx
        .consumer()
        .on(
            EventType::InventoryReserved,
            handlers::OnInventoryReserved {
                catalog: ctx.catalog.clone(),
                max_amount: settings.payment_max_amount,
            },
        )
        .on(
            EventType::OrderCancelled,
            handlers::OnOrderCancelled {
                catalog: ctx.catalog.clone(),
            },
        );
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: Vec::new(),
    })
}

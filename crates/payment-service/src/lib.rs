//! The orderflow payment service: charges reserved orders through a
//! simulated, deterministic gateway ([`gateway`]) and refunds cancelled ones.
//!
//! - `InventoryReserved` → `PaymentProcessed` or `PaymentFailed`, at most
//!   once per order and never after a cancellation was seen.
//! - `OrderCancelled` → a processed payment is refunded (`PaymentRefunded`);
//!   with no payment yet, a `VOIDED` tombstone stops a later charge.
//! - `GET /payments/{orderId}` shows an order's payment.
//!
//! See `docs/saga.md` for how this fits the saga.

pub mod api;
pub mod db;
pub mod gateway;
pub mod handlers;

use orderflow_events::EventType;
use orderflow_service::{Context, Parts};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "payment-service";

/// Default of `PAYMENT_MAX_AMOUNT` (minor units).
pub const DEFAULT_MAX_AMOUNT: i64 = 1_000_000;

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The service's routes and consumer; the gateway refuses amounts over
/// `max_amount`.
pub fn build(ctx: &Context, max_amount: i64) -> anyhow::Result<Parts> {
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
    });
    let consumer = ctx
        .consumer()
        .on(
            EventType::InventoryReserved,
            handlers::OnInventoryReserved {
                catalog: ctx.catalog.clone(),
                max_amount,
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

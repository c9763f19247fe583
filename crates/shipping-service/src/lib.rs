//! The orderflow shipping service.
//!
//! Creates a shipment (tracking number, carrier, label) for every paid order
//! (`PaymentProcessed` → `ShippingCreated`), cancels it when the order is
//! cancelled first (`OrderCancelled`), and moves it through dispatch and
//! delivery over HTTP (`ShippingDispatched`, `ShippingDelivered`). It is
//! the one authority on the saga's pivot: it answers every cancellation
//! request (`OrderCancellationRequested`) with `ShippingCancelled` or, when
//! the parcel left first, `ShippingCancellationRejected`. See
//! `docs/saga.md`.

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod handlers;

use orderflow_events::EventType;
use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "shipping-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Name, port and migrations, for
/// [`orderflow_service::run`].
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "shipping",
        source: SOURCE,
        default_port: 8084,
        migrator: &MIGRATOR,
    }
}

/// The service's routes and consumer.
pub fn build(ctx: &Context, settings: &config::Settings) -> anyhow::Result<Parts> {
    settings.check()?;
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        catalog: ctx.catalog.clone(),
    });
    let consumer = ctx
        .consumer()
        .on(
            EventType::PaymentProcessed,
            handlers::OnPaymentProcessed {
                catalog: ctx.catalog.clone(),
                carrier: settings.shipping_carrier.clone(),
            },
        )
        .on(EventType::OrderCancelled, handlers::OnOrderCancelled)
        .on(
            EventType::OrderCancellationRequested,
            handlers::OnOrderCancellationRequested {
                catalog: ctx.catalog.clone(),
            },
        );
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: Vec::new(),
    })
}

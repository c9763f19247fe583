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

mod api;
mod db;
#[cfg(test)]
mod db_tests;
mod domain;
mod handlers;

use clap::Parser;
use orderflow_events::EventType;
use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "shipping-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, clap::Parser)]
#[command(
    name = "shipping-service",
    version,
    about = "Creates, dispatches and delivers the shipments of paid orders."
)]
struct Config {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,

    /// Carrier named on every new shipment.
    #[arg(long, env = "SHIPPING_CARRIER", default_value = "OrderFlow Post")]
    shipping_carrier: String,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let carrier = config.shipping_carrier;
    orderflow_service::run(
        ServiceSpec {
            name: "shipping",
            source: SOURCE,
            default_port: 8084,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        |ctx| build(ctx, carrier),
    )
    .await
}

/// Wires the routes and the consumer.
fn build(ctx: &Context, carrier: String) -> anyhow::Result<Parts> {
    anyhow::ensure!(
        !carrier.trim().is_empty(),
        "SHIPPING_CARRIER must not be empty"
    );
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        catalog: ctx.catalog.clone(),
    });
    let consumer = ctx
        .consumer()
        .on(
            EventType::PaymentProcessed,
            handlers::PaymentProcessedHandler {
                catalog: ctx.catalog.clone(),
                carrier,
            },
        )
        .on(EventType::OrderCancelled, handlers::OrderCancelledHandler)
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

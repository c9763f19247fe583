//! The orderflow order service: accepts orders over HTTP, starts the saga
//! with `OrderCreated`, follows the other services' events to advance each
//! order's status, and cancels orders whose saga fails or stalls.

mod api;
#[cfg(test)]
mod db_tests;
mod handlers;
mod metrics;
mod pricing;
mod request;
mod saga;
mod store;
mod sweeper;
mod timeline;
mod writer;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use orderflow_events::EventType;
use orderflow_service::config::parse_duration;
use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of every event this service emits.
pub const SOURCE: &str = "order-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(Debug, Parser)]
#[command(
    name = "order-service",
    version,
    about = "The orderflow order service: orders over HTTP and the saga's status."
)]
struct Config {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,

    /// How long a saga may go without a status change before the order is
    /// cancelled (`SAGA_TIMEOUT`), e.g. 30s, 5m.
    #[arg(long, env = "ORDER_SAGA_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    saga_timeout: Duration,

    /// How often the deadline sweeper looks for stalled sagas.
    #[arg(long, env = "ORDER_DEADLINE_CHECK_INTERVAL", default_value = "5s",
          value_parser = parse_duration)]
    deadline_check_interval: Duration,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let (timeout, interval) = (config.saga_timeout, config.deadline_check_interval);
    orderflow_service::run(
        ServiceSpec {
            name: "order",
            source: SOURCE,
            default_port: 8080,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        move |ctx| build(ctx, timeout, interval),
    )
    .await
}

fn build(ctx: &Context, timeout: Duration, interval: Duration) -> anyhow::Result<Parts> {
    let saga_timeout =
        chrono::TimeDelta::from_std(timeout).context("ORDER_SAGA_TIMEOUT is too large")?;
    metrics::register();
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        topics: ctx.catalog.clone(),
        timeout: saga_timeout,
        writer: writer::OrderWriter::spawn(ctx.api_pool.clone()),
    });

    let consumer = ctx
        .consumer()
        .on(EventType::InventoryAdjusted, handlers::CatalogHandler)
        // One handler for every saga event, so a batch mixing their types is
        // applied in one `handle_batch` call.
        .on_each(
            handlers::ORDER_EVENT_TYPES,
            handlers::OrderEvents {
                topics: ctx.catalog.clone(),
                timeout: saga_timeout,
            },
        );

    let sweeper = sweeper::Sweeper {
        pool: ctx.pool.clone(),
        topics: ctx.catalog.clone(),
        timeout,
        interval,
    };
    let shutdown = ctx.shutdown.clone();
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: vec![(
            "deadline-sweeper",
            Box::pin(async move { sweeper.run(shutdown).await }),
        )],
    })
}

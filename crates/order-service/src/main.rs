//! The orderflow order service: accepts orders over HTTP, starts the saga
//! with `OrderCreated`, follows the other services' events to advance each
//! order's status, and cancels orders whose saga fails or stalls.

mod api;
#[cfg(test)]
mod db_tests;
mod handlers;
mod metrics;
mod request;
mod saga;
mod store;
mod sweeper;
mod timeline;
mod writer;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use orderflow_events::consumer::{ConsumerOptions, EventConsumer};
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

    /// Consumer workers per topic: the partitions of each consumed topic
    /// share this many, and a worker's transactions take records of all its
    /// partitions; 0 gives every partition a worker of its own. One worker
    /// makes the largest batches, so the fewest transactions per order.
    #[arg(long, env = "ORDER_CONSUMER_WORKERS_PER_TOPIC", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    consumer_workers_per_topic: u16,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let (timeout, interval) = (config.saga_timeout, config.deadline_check_interval);
    let workers = usize::from(config.consumer_workers_per_topic);
    orderflow_service::run(
        ServiceSpec {
            name: "order",
            source: SOURCE,
            default_port: 8080,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        move |ctx| build(ctx, timeout, interval, workers),
    )
    .await
}

fn build(
    ctx: &Context,
    timeout: Duration,
    interval: Duration,
    workers_per_topic: usize,
) -> anyhow::Result<Parts> {
    let saga_timeout =
        chrono::TimeDelta::from_std(timeout).context("ORDER_SAGA_TIMEOUT is too large")?;
    metrics::register();
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        topics: ctx.catalog.clone(),
        timeout: saga_timeout,
        writer: writer::OrderWriter::spawn(ctx.api_pool.clone()),
    });

    let consumer = EventConsumer::new(
        &ctx.kafka,
        &ctx.consumer_group,
        ctx.pool.clone(),
        ctx.codec.clone(),
        ctx.catalog.clone(),
    )
    .with_options(ConsumerOptions {
        workers_per_topic,
        ..ConsumerOptions::default()
    })
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

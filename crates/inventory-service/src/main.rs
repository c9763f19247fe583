//! `inventory-service`: see the library crate for what it does.

use clap::Parser;
use inventory_service::{build, MIGRATOR, SOURCE};
use orderflow_service::ServiceSpec;

/// The inventory service's settings (all shared; see `--help`).
#[derive(Parser)]
#[command(
    name = "inventory-service",
    version,
    about = "The orderflow inventory service: stock levels and reservations."
)]
struct Config {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    orderflow_service::run(
        ServiceSpec {
            name: "inventory",
            source: SOURCE,
            default_port: 8082,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        build,
    )
    .await
}

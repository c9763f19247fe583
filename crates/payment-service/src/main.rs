//! `payment-service`: see the library crate for what it does.

use clap::Parser;
use orderflow_service::ServiceSpec;
use payment_service::{build, DEFAULT_MAX_AMOUNT, MIGRATOR, SOURCE};

/// The payment service's settings.
#[derive(Parser)]
#[command(
    name = "payment-service",
    version,
    about = "The orderflow payment service: charges and refunds through a simulated gateway."
)]
struct Config {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,

    /// Largest amount (minor units) the simulated gateway accepts; larger
    /// charges are declined with `amount_too_large`.
    #[arg(long, env = "PAYMENT_MAX_AMOUNT", default_value_t = DEFAULT_MAX_AMOUNT,
          value_parser = clap::value_parser!(i64).range(0..))]
    payment_max_amount: i64,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let max_amount = config.payment_max_amount;
    orderflow_service::run(
        ServiceSpec {
            name: "payment",
            source: SOURCE,
            default_port: 8083,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        |ctx| build(ctx, max_amount),
    )
    .await
}

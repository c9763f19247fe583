//! `notification-service`: see the library crate for what it does.

use clap::Parser;
use notification_service::{build, config::Settings, spec};

#[derive(Parser)]
#[command(
    name = "notification-service",
    version,
    about = "E-mails customers about their orders over SMTP."
)]
struct Cli {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,
    #[command(flatten)]
    settings: Settings,
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Checked before anything starts, so a bad SMTP setting fails at once.
    cli.settings.smtp()?;
    orderflow_service::run(spec(), cli.common, |ctx| build(ctx, &cli.settings)).await
}

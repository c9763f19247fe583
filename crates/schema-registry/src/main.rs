//! Schema registry binary: configuration from the environment, then serve
//! until SIGINT or SIGTERM.

use anyhow::Context;
use orderflow_schema_registry::{build, Config};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = Config::from_env().context("invalid configuration")?;
    let shutdown = shutdown_signal().context("listening for SIGINT and SIGTERM")?;
    let app = build(config)
        .await
        .context("starting the schema registry")?;
    app.run_until(shutdown).await.context("serving HTTP")?;
    tracing::info!("schema registry stopped");
    Ok(())
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from now on; the future completes
/// on the first of them. Called before anything is served: a handler
/// installed only once the server runs would miss a signal sent as soon as
/// the registry answers (the process would die without draining, or ignore
/// it where the parent ignores SIGTERM).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown signal received");
    })
}

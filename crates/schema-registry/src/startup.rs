//! Building the application (database, listener) and serving it.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::db;

/// A registry with its database ready and its port bound, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

/// Prepares the database (creating and migrating it) and binds the listener,
/// so that a port of 0 is resolved before [`Application::run_until`].
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let pool = db::connect(&config.database).await?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    Ok(Application {
        listener,
        local_addr,
        router: api::router(AppState { pool }),
    })
}

impl Application {
    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(addr = %self.local_addr, "schema registry listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

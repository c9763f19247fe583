//! Building the application (database, listener) and serving it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Users;
use crate::config::{Config, ANONYMOUS_VAR, AUTH_FILE_VAR};
use crate::db;

/// A registry with its database ready and its port bound, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    shutdown_grace: Duration,
}

/// Prepares the database (creating and migrating it) and binds the listener,
/// so that a port of 0 is resolved before [`Application::run_until`].
pub async fn build(config: Config) -> anyhow::Result<Application> {
    let users = match &config.auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the users file {}", path.display()))?;
            let users = Users::parse(&text)
                .with_context(|| format!("the users file {}", path.display()))?;
            Some(Arc::new(users))
        }
        None if !config.listen_addr.ip().is_loopback() && !config.anonymous => anyhow::bail!(
            "listening on {} without {AUTH_FILE_VAR}: anyone who reaches it could register \
             and delete schemas or change compatibility levels; set {AUTH_FILE_VAR}, listen \
             on a loopback address, or set {ANONYMOUS_VAR}=true to accept that",
            config.listen_addr
        ),
        None => None,
    };
    if users.is_none() {
        tracing::warn!(addr = %config.listen_addr, "no {AUTH_FILE_VAR}: the registry asks nobody who they are");
    }
    let pool = db::connect(&config.database).await?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    Ok(Application {
        listener,
        local_addr,
        router: api::router(AppState { pool, users }),
        shutdown_grace: config.shutdown_grace,
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

    /// Serves until `shutdown` completes, then lets open connections finish
    /// their requests for up to the configured grace
    /// ([`Config::shutdown_grace`](crate::Config)) and returns, whether or
    /// not they did: a client that never completes a request (or keeps a
    /// connection open without sending one) cannot keep the registry
    /// running.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(addr = %self.local_addr, "schema registry listening");
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signal = {
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                // A stored permit: seen below even if not waited for yet.
                stopping.notify_one();
            }
        };
        let serve = std::future::IntoFuture::into_future(
            axum::serve(self.listener, self.router).with_graceful_shutdown(signal),
        );
        tokio::pin!(serve);
        tokio::select! {
            served = &mut serve => return served,
            () = stopping.notified() => {}
        }
        // Stopping: the server drains its connections, for the grace at most.
        let grace = self.shutdown_grace;
        tokio::time::timeout(grace, serve).await.unwrap_or_else(|_| {
            tracing::warn!(grace = ?grace, "connections still open after the shutdown grace; stopping without them");
            Ok(())
        })
    }
}

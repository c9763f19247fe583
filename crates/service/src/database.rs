//! Connecting to the service's database and bringing its schema up to
//! date, waiting while PostgreSQL is unreachable or busy.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A pooled connection idle for this long is pinged before it is used.
const IDLE_PING_AFTER: Duration = Duration::from_secs(10);

/// Applies the events crate's and the service's migrations, retrying while
/// the database is busy.
pub(crate) async fn apply_migrations(
    pool: &PgPool,
    migrator: &Migrator,
    name: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        let result = match orderflow_events::migrate(pool).await {
            Ok(()) => migrator.run(pool).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(e)) if transient(&e) => {
                tracing::warn!(error = %e, "database busy while migrating; retrying");
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("running the {name} migrations")))
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("stopped while waiting for the database"),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Connects, waiting (with a log line per attempt) while the database is
/// unreachable, until shutdown is requested.
pub(crate) async fn connect(
    url: &str,
    max_connections: u32,
    shutdown: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // A connection used moments ago is handed out as it is (sqlx
            // would otherwise ping every one, a round trip per
            // transaction); one idle for a while is pinged first, and a
            // dead one is replaced.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(e) if transient(&e) => {
                tracing::warn!(error = %e, "database unreachable or busy; retrying");
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to the database")),
        }
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("stopped while waiting for the database"),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Errors that go away by waiting: the server is unreachable, the pool is
/// exhausted, or PostgreSQL refuses connections for now (53300
/// too_many_connections, 57P03 cannot_connect_now).
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(d) => matches!(d.code().as_deref(), Some("53300" | "57P03")),
        _ => false,
    }
}

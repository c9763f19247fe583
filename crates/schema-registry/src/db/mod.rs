//! Database setup: create the database if missing, connect, migrate.

pub mod store;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// The maintenance database every PostgreSQL cluster has.
const MAINTENANCE_DB: &str = "postgres";

/// Creates the target database if needed, opens a pool and applies the
/// migrations in `crates/schema-registry/migrations/`.
pub async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgPool> {
    if let Some(name) = options.get_database() {
        ensure_database(options, name).await?;
    }
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .with_context(|| format!("connecting to database on {}", options.get_host()))?;
    sqlx::migrate!()
        .run(&pool)
        .await
        .context("applying schema registry migrations")?;
    Ok(pool)
}

/// Creates database `name` through the maintenance database unless it
/// exists, so that starting the registry locally is idempotent.
async fn ensure_database(options: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    if name == MAINTENANCE_DB {
        return Ok(());
    }
    let mut conn = PgConnection::connect_with(&options.clone().database(MAINTENANCE_DB))
        .await
        .with_context(|| {
            format!(
                "connecting to maintenance database {MAINTENANCE_DB:?} on {}",
                options.get_host()
            )
        })?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        name
    )
    .fetch_one(&mut conn)
    .await
    .context("checking whether the registry database exists")?;
    if !exists {
        // A name chosen at run time: not a checked query.
        let created = sqlx::query(&format!("CREATE DATABASE {}", quote_ident(name)))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another process created it between our check and our CREATE.
            Err(e) if is_already_exists(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name:?}")),
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Quotes an SQL identifier (database names cannot be bound as parameters).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_already_exists(error: &sqlx::Error) -> bool {
    // 42P04 duplicate_database; 23505 when two CREATEs race on the catalog.
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P04" || code == "23505")
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}

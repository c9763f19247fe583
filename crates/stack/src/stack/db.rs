//! The stack's PostgreSQL side: its admin connection and its databases.
//! Its statements are runtime `sqlx::query`: `CREATE`/`DROP DATABASE`
//! take the database's name spliced in (quoted), which a checked query
//! cannot.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{Connection, PgConnection};

/// `url` with its database (path) replaced by `db`.
pub(super) fn database_url(admin: &str, db: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin)
        .with_context(|| format!("ORDERFLOW_TEST_DATABASE_URL={admin} is not a URL"))?;
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

/// Creates database `name` empty (dropping one of that name first, with
/// its connections: a stack with a fixed id reuses its names).
pub(super) async fn create_database(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    Ok(())
}

/// Creates database `name` unless it exists (kept between runs).
pub(super) async fn ensure_database(conn: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("looking for database {name}"))?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}

/// Connects to the admin database. A server of the stack's own accepts
/// connections a moment before it lets them in (`57P03`, "the database
/// system is starting up"): those are retried for up to a minute.
pub(super) async fn connect_admin(admin: &str) -> anyhow::Result<PgConnection> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match PgConnection::connect(admin).await {
            Ok(conn) => return Ok(conn),
            Err(e)
                if Instant::now() < deadline
                    && e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "57P03") =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("connecting to the admin database {admin}")))
            }
        }
    }
}

/// `url` with the password of its credentials replaced by `***`.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

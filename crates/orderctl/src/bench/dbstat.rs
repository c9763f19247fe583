//! What each service's database did during the load, from PostgreSQL's
//! own counters (`pg_stat_database`): transactions committed (a statement
//! outside a transaction counts as one) and rows written. The report
//! divides the difference of two snapshots by the completed orders, a
//! figure that does not depend on how busy the machine was, unlike the
//! latencies.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use orderflow_stack::Service;
use serde::{Deserialize, Serialize};
use sqlx::Connection;

/// One database's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCounters {
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub tup_inserted: i64,
    pub tup_updated: i64,
    pub tup_deleted: i64,
}

/// The counters of each service's database `<id>_<service>`, by service.
pub type DbSnapshot = BTreeMap<String, DbCounters>;

fn database(id: &str, svc: Service) -> String {
    format!("{id}_{}", svc.name())
}

/// Reads the counters of the run's databases over the admin connection.
pub async fn snapshot(admin_url: &str, id: &str) -> anyhow::Result<DbSnapshot> {
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .context("connecting to PostgreSQL for its statistics")?;
    let mut out = DbSnapshot::new();
    for svc in Service::ALL {
        let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted \
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind(database(id, svc))
        .fetch_optional(&mut conn)
        .await
        .context("reading pg_stat_database")?;
        let Some((xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted)) = row else {
            continue;
        };
        out.insert(
            svc.name().to_owned(),
            DbCounters {
                xact_commit,
                xact_rollback,
                tup_inserted,
                tup_updated,
                tup_deleted,
            },
        );
    }
    conn.close().await.ok();
    Ok(out)
}

/// Waits until no session is connected to the run's databases (a server
/// process reports its last counters when it exits; a busy one only about
/// once a second), or `timeout`; `false` on the timeout.
pub async fn wait_disconnected(
    admin_url: &str,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let names: Vec<String> = Service::ALL.iter().map(|s| database(id, *s)).collect();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await
        .context("connecting to PostgreSQL")?;
    let gone = orderflow_stack::poll_until(timeout, || {
        let (pool, names) = (pool.clone(), names.clone());
        async move {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)")
                    .bind(&names)
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| format!("reading pg_stat_activity: {e}"))?;
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} sessions left"))
            }
        }
    })
    .await;
    pool.close().await;
    Ok(gone.is_ok())
}

/// Writes `snapshot` as JSON.
pub fn write(path: &Path, snapshot: &DbSnapshot) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(snapshot)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Per service: each counter's growth from `start` to `end` divided by
/// `orders`, rounded to two places; empty when no order completed.
pub fn per_order(
    start: &DbSnapshot,
    end: &DbSnapshot,
    orders: f64,
) -> BTreeMap<String, BTreeMap<&'static str, f64>> {
    let mut out = BTreeMap::new();
    if orders <= 0.0 {
        return out;
    }
    for (svc, e) in end {
        let s = start.get(svc).copied().unwrap_or_default();
        let per = |a: i64, b: i64| ((a - b) as f64 / orders * 100.0).round() / 100.0;
        out.insert(
            svc.clone(),
            BTreeMap::from([
                ("transactions", per(e.xact_commit, s.xact_commit)),
                ("rollbacks", per(e.xact_rollback, s.xact_rollback)),
                ("rows_inserted", per(e.tup_inserted, s.tup_inserted)),
                ("rows_updated", per(e.tup_updated, s.tup_updated)),
                ("rows_deleted", per(e.tup_deleted, s.tup_deleted)),
            ]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_growth_is_divided_by_the_orders() {
        let c = |x: i64| DbCounters {
            xact_commit: x,
            xact_rollback: 0,
            tup_inserted: 2 * x,
            tup_updated: 0,
            tup_deleted: x,
        };
        let start = DbSnapshot::from([("order".to_owned(), c(100))]);
        let end = DbSnapshot::from([("order".to_owned(), c(400)), ("payment".to_owned(), c(50))]);
        let p = per_order(&start, &end, 100.0);
        assert_eq!(p["order"]["transactions"], 3.0);
        assert_eq!(p["order"]["rows_inserted"], 6.0);
        assert_eq!(p["order"]["rows_deleted"], 3.0);
        // A database missing from the start counts from zero.
        assert_eq!(p["payment"]["transactions"], 0.5);
        assert!(per_order(&start, &end, 0.0).is_empty());
    }
}

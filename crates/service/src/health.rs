//! `/health/live`, `/health/ready`, `/health/detail`, `/health/consumers`,
//! `/metrics` and `/openapi.json`.
//!
//! Readiness is the database only: while the broker or the registry is
//! down a service still takes requests, and the outbox holds their events
//! until it is back, so Kubernetes must not take the pod out of its Service
//! then. `/health/detail` and the `orderflow_dependency_up` gauge show the
//! broker and the registry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use orderflow_events::kafka::BrokerProbe;
use orderflow_events::metrics::prometheus_client::encoding::EncodeLabelSet;
use orderflow_events::metrics::prometheus_client::metrics::family::Family;
use orderflow_events::metrics::prometheus_client::metrics::gauge::Gauge;
use orderflow_events::registry::RegistryClient;
use serde_json::{json, Value};
use sqlx::PgPool;

/// What readiness checks.
#[derive(Clone)]
pub struct Probes {
    /// The service's database.
    pub pool: PgPool,
    /// The Kafka brokers.
    pub broker: Arc<BrokerProbe>,
    /// The schema registry.
    pub registry: RegistryClient,
    /// The service's OpenAPI document (JSON text).
    pub openapi: &'static str,
    /// The service name.
    pub service: &'static str,
    /// The consumer group of the service's consumer, if it has one.
    pub consumer_group: Option<String>,
    /// The dead-letter topics of the topics its consumer reads, whose
    /// records `/metrics` counts (`orderflow_dlq_records`).
    pub dlq_topics: Vec<String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Prefixes of the paths [`routes`] serves in every service, beside the
/// service's own API.
pub const RUNTIME_PATHS: [&str; 3] = ["/health/", "/metrics", "/openapi.json"];

/// The health, metrics and OpenAPI routes.
pub fn routes(probes: Probes) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/detail", get(detail))
        .route("/health/consumers", get(consumers))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(probes)
}

/// `dependency`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

/// `orderflow_dependency_up{dependency}`: 1 when the last check of the
/// database, broker or registry succeeded, 0 when it failed.
fn dependency_up() -> &'static Family<DependencyLabels, Gauge> {
    static UP: OnceLock<Family<DependencyLabels, Gauge>> = OnceLock::new();
    UP.get_or_init(|| {
        let family = Family::default();
        orderflow_events::metrics::register(|r| {
            r.register(
                "orderflow_dependency_up",
                "Whether the last check of a dependency (database, broker, registry) succeeded: 1 up, 0 down; checked at each scrape and each GET /health/detail",
                family.clone(),
            );
        });
        family
    })
}

/// Registers the health metrics (so a scrape shows them from the start).
pub fn register_metrics() {
    dependency_up();
}

fn time_out<T>(r: Result<Result<T, String>, tokio::time::error::Elapsed>) -> Result<T, String> {
    r.unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")))
}

async fn check_database(p: &Probes) -> Result<String, String> {
    let q = async {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&p.pool)
            .await
            .map(|_| "SELECT 1 ok".to_owned())
            .map_err(|e| e.to_string())
    };
    time_out(tokio::time::timeout(CHECK_TIMEOUT, q).await)
}

/// Checks every dependency at once (2 s each at most), records the
/// `orderflow_dependency_up` gauges and returns the checks as JSON.
async fn check_dependencies(p: &Probes) -> (bool, Value) {
    let broker = async {
        p.broker
            .check(CHECK_TIMEOUT)
            .await
            .map(|n| format!("{n} broker(s)"))
    };
    let registry = async {
        let r = async { p.registry.check().await.map_err(|e| e.to_string()) };
        time_out(tokio::time::timeout(CHECK_TIMEOUT, r).await)
            .map(|()| format!("{} answers", p.registry.base_url()))
    };
    let (database, broker, registry) = tokio::join!(check_database(p), broker, registry);
    let mut all_up = true;
    let mut checks = serde_json::Map::new();
    for (name, result) in [
        ("database", database),
        ("broker", broker),
        ("registry", registry),
    ] {
        all_up &= result.is_ok();
        dependency_up()
            .get_or_create(&DependencyLabels { dependency: name })
            .set(i64::from(result.is_ok()));
        checks.insert(name.to_owned(), show(result));
    }
    (all_up, Value::Object(checks))
}

fn show(r: Result<String, String>) -> Value {
    match r {
        Ok(s) => json!({"status": "up", "detail": s}),
        Err(e) => json!({"status": "down", "detail": e}),
    }
}

/// Every metric of the process in OpenMetrics text format; the outbox
/// gauges are read from the database and the dependencies checked now
/// (each kept from the last scrape when it does not answer within 2 s).
async fn metrics(State(p): State<Probes>) -> Response {
    let outbox = async {
        let mut conn = p.pool.acquire().await?;
        orderflow_events::metrics::observe_outbox(&mut conn).await
    };
    let dlq = async {
        let counts = p
            .broker
            .record_counts(p.dlq_topics.clone(), CHECK_TIMEOUT)
            .await?;
        for (topic, n) in counts {
            orderflow_events::metrics::pipeline().dlq_records(&topic, n);
        }
        Ok::<(), String>(())
    };
    let (outbox, _, dlq) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, outbox),
        check_dependencies(&p),
        tokio::time::timeout(CHECK_TIMEOUT * 2, dlq)
    );
    match dlq {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "dead letters not counted"),
        Err(_) => tracing::debug!("dead letters not counted: timed out"),
    }
    match outbox {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "outbox backlog not measured"),
        Err(_) => tracing::debug!("outbox backlog not measured: timed out"),
    }
    (
        [(
            header::CONTENT_TYPE,
            orderflow_events::metrics::CONTENT_TYPE,
        )],
        orderflow_events::metrics::encode(),
    )
        .into_response()
}

async fn live(State(p): State<Probes>) -> Json<serde_json::Value> {
    Json(json!({"status": "live", "service": p.service}))
}

/// Ready when the database answers. The broker and the registry are not
/// asked: without them requests still succeed and their events wait in the
/// outbox (see the module docs and `/health/detail`).
async fn ready(State(p): State<Probes>) -> Response {
    let database = check_database(&p).await;
    let ok = database.is_ok();
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "service": p.service,
        "checks": { "database": show(database) },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Every dependency, the consumer's partitions and the outbox backlog;
/// always 200 (`status` says `ok` or `degraded`): a page for people and
/// dashboards, not a probe.
async fn detail(State(p): State<Probes>) -> Json<Value> {
    let (all_up, checks) = check_dependencies(&p).await;
    let outbox = async {
        let mut conn = p.pool.acquire().await.map_err(|e| e.to_string())?;
        orderflow_events::outbox::backlog(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let outbox = match time_out(tokio::time::timeout(CHECK_TIMEOUT, outbox).await) {
        Ok((backlog, age)) => json!({"backlog": backlog, "oldestAgeSeconds": age}),
        Err(e) => json!({"error": e}),
    };
    let consumers: Vec<_> = orderflow_events::consumer::assignment::snapshot()
        .into_iter()
        .filter(|a| {
            p.consumer_group
                .as_ref()
                .is_some_and(|g| of_service(g, &a.group))
        })
        .collect();
    Json(json!({
        "status": if all_up { "ok" } else { "degraded" },
        "service": p.service,
        "checks": checks,
        "consumers": consumers,
        "outbox": outbox,
    }))
}

/// Whether `member_group` is the service's group `group` or one of its
/// projections' (`<group>.<projection>`).
fn of_service(group: &str, member_group: &str) -> bool {
    member_group
        .strip_prefix(group)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The partitions the service's consumers hold (its group's, then its
/// projections' groups', named `<group>.<projection>`): 200 once each
/// group holds at least one, 503 while one holds none (not subscribed yet,
/// waiting for the group's rebalance, or left without partitions). Not a
/// readiness probe: with more replicas than partitions a spare member
/// rightly holds none.
async fn consumers(State(p): State<Probes>) -> Response {
    let Some(group) = p.consumer_group else {
        return Json(json!({"status": "none", "service": p.service, "consumers": []}))
            .into_response();
    };
    let members: Vec<_> = orderflow_events::consumer::assignment::snapshot()
        .into_iter()
        .filter(|a| of_service(&group, &a.group))
        .collect();
    let groups: std::collections::BTreeSet<&str> =
        members.iter().map(|a| a.group.as_str()).collect();
    let assigned = groups.contains(group.as_str())
        && groups
            .iter()
            .all(|g| members.iter().any(|a| a.group == *g && a.assigned > 0));
    let body = json!({
        "status": if assigned { "assigned" } else { "waiting" },
        "service": p.service,
        "group": group,
        "consumers": members,
    });
    let status = if assigned {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn openapi(State(p): State<Probes>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        p.openapi.to_owned(),
    )
        .into_response()
}

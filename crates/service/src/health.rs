//! `/health/live`, `/health/ready`, `/health/consumers`, `/metrics` and
//! `/openapi.json`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use orderflow_events::kafka::BrokerProbe;
use serde_json::json;
use sqlx::PgPool;

/// What readiness checks.
#[derive(Clone)]
pub struct Probes {
    /// The service's database.
    pub pool: PgPool,
    /// The Kafka brokers.
    pub broker: Arc<BrokerProbe>,
    /// The service's OpenAPI document (JSON text).
    pub openapi: &'static str,
    /// The service name.
    pub service: &'static str,
    /// The consumer group of the service's consumer, if it has one.
    pub consumer_group: Option<String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The health, metrics and OpenAPI routes.
pub fn routes(probes: Probes) -> Router {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/consumers", get(consumers))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(probes)
}

/// Every metric of the process in OpenMetrics text format; the outbox
/// gauges are read from the database now (kept from the last scrape when
/// it does not answer within 2 s).
async fn metrics(State(p): State<Probes>) -> Response {
    let outbox = async {
        let mut conn = p.pool.acquire().await?;
        orderflow_events::metrics::observe_outbox(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, outbox).await {
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

async fn ready(State(p): State<Probes>) -> Response {
    let database = async {
        tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&p.pool),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let broker = p.broker.check(CHECK_TIMEOUT);
    let (database, broker) = tokio::join!(database, broker);
    let ok = database.is_ok() && broker.is_ok();
    let show = |r: Result<String, String>| match r {
        Ok(s) => json!({"status": "up", "detail": s}),
        Err(e) => json!({"status": "down", "detail": e}),
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "service": p.service,
        "checks": {
            "database": show(database.map(|()| "SELECT 1 ok".to_owned())),
            "broker": show(broker.map(|n| format!("{n} broker(s)"))),
        }
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The partitions the service's consumer holds: 200 once it holds at
/// least one, 503 while it holds none (not subscribed yet, waiting for the
/// group's rebalance, or left without partitions). Not a readiness probe:
/// with more replicas than partitions a spare member rightly holds none.
async fn consumers(State(p): State<Probes>) -> Response {
    let Some(group) = p.consumer_group else {
        return Json(json!({"status": "none", "service": p.service, "consumers": []}))
            .into_response();
    };
    let members: Vec<_> = orderflow_events::consumer::assignment::snapshot()
        .into_iter()
        .filter(|a| a.group == group)
        .collect();
    let assigned = members.iter().any(|a| a.assigned > 0);
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

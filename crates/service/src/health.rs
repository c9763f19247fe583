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
use axum::Json;
use orderflow_events::consumer::assignment::GroupAssignment;
use orderflow_events::kafka::BrokerProbe;
use orderflow_events::metrics::prometheus_client::encoding::EncodeLabelSet;
use orderflow_events::metrics::prometheus_client::metrics::family::Family;
use orderflow_events::metrics::prometheus_client::metrics::gauge::Gauge;
use orderflow_events::registry::RegistryClient;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::openapi::OpenApi;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::openapi::ApiRouter;

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
    pub openapi: Arc<str>,
    /// The service name.
    pub service: &'static str,
    /// The consumer group of the service's consumer, if it has one.
    pub consumer_group: Option<String>,
    /// The dead-letter topics of the topics its consumer reads, whose
    /// records `/metrics` counts (`orderflow_dlq_records`).
    pub dlq_topics: Vec<String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The health, metrics and OpenAPI routes, with their document.
pub fn routes() -> ApiRouter<Probes> {
    ApiRouter::new(OpenApi::default())
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(detail))
        .routes(routes!(consumers))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// The document of [`routes`].
pub fn api() -> OpenApi {
    routes().openapi().clone()
}

/// `GET /health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always `live`.
    pub status: LiveStatus,
    /// The service, e.g. `order-service`.
    pub service: String,
}

/// Always `live`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveStatus {
    /// The process runs.
    Live,
}

/// One dependency check.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `up` when it answered.
    pub status: CheckStatus,
    /// What it answered, or why it did not.
    pub detail: String,
}

/// `up` or `down`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// It answered.
    Up,
    /// It failed or did not answer in time.
    Down,
}

/// `GET /health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready` when the database answers.
    pub status: ReadyStatus,
    /// The service.
    pub service: String,
    /// The database check.
    pub checks: ReadyChecks,
}

/// `ready` or `not_ready`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// The database answers.
    Ready,
    /// It does not.
    NotReady,
}

/// What readiness checks: the database only.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    /// The database.
    pub database: Check,
}

/// `GET /health/detail`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    /// `degraded` when any check is down.
    pub status: DetailStatus,
    /// The service.
    pub service: String,
    /// The database, the brokers and the schema registry.
    pub checks: Checks,
    /// The service's consumer group members in this process, as in
    /// `GET /health/consumers`.
    pub consumers: Vec<GroupAssignment>,
    /// The outbox: unpublished rows, or why they could not be counted.
    pub outbox: OutboxState,
}

/// `ok` or `degraded`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DetailStatus {
    /// Every check is up.
    Ok,
    /// At least one is down.
    Degraded,
}

/// Every dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    /// The service's database.
    pub database: Check,
    /// The Kafka brokers.
    pub broker: Check,
    /// The schema registry.
    pub registry: Check,
}

/// The outbox backlog, or why it could not be read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OutboxState {
    /// Read.
    #[serde(rename_all = "camelCase")]
    Backlog {
        /// Unpublished outbox rows.
        backlog: i64,
        /// Age of the oldest, in seconds.
        oldest_age_seconds: f64,
    },
    /// Not read (the database failed or did not answer in 2 s).
    Error {
        /// Why.
        error: String,
    },
}

/// `GET /health/consumers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Consumers {
    /// `assigned` once every group of the service holds a partition,
    /// `waiting` before, `none` for a service that consumes nothing.
    pub status: ConsumersStatus,
    /// The service.
    pub service: String,
    /// The service's consumer group (absent when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Its members in this process, and its projections'.
    pub consumers: Vec<GroupAssignment>,
}

/// Where the service's consumer groups stand.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsumersStatus {
    /// Every group holds at least one partition.
    Assigned,
    /// One holds none yet.
    Waiting,
    /// The service has no consumer.
    None,
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
async fn check_dependencies(p: &Probes) -> (bool, Checks) {
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
    for (name, result) in [
        ("database", &database),
        ("broker", &broker),
        ("registry", &registry),
    ] {
        all_up &= result.is_ok();
        dependency_up()
            .get_or_create(&DependencyLabels { dependency: name })
            .set(i64::from(result.is_ok()));
    }
    let checks = Checks {
        database: show(database),
        broker: show(broker),
        registry: show(registry),
    };
    (all_up, checks)
}

fn show(r: Result<String, String>) -> Check {
    match r {
        Ok(detail) => Check {
            status: CheckStatus::Up,
            detail,
        },
        Err(detail) => Check {
            status: CheckStatus::Down,
            detail,
        },
    }
}

/// Every metric of the process in OpenMetrics text format; the outbox
/// gauges are read from the database and the dependencies checked now
/// (each kept from the last scrape when it does not answer within 2 s).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    summary = "Prometheus metrics",
    description = "Every metric of the process in OpenMetrics text format (Prometheus scrapes it natively): the event pipeline (`orderflow_events_published_total`, `orderflow_events_consumed_total{outcome}`, `orderflow_events_failed_total{error}`, `orderflow_events_dead_lettered_total{reason}`, `orderflow_handler_duration_seconds`, `orderflow_outbox_backlog`, `orderflow_outbox_oldest_age_seconds` (read from the outbox at scrape time), `orderflow_consumer_lag{topic,partition}`, `orderflow_dlq_records{topic}`), HTTP requests (`orderflow_http_requests_total{method,route,status}`, `orderflow_http_request_duration_seconds`) and the dependency checks (`orderflow_dependency_up{dependency}`).",
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "application/openmetrics-text",
         example = "# HELP orderflow_events_published Events the outbox relay published (acknowledged by the broker).\n# TYPE orderflow_events_published counter\norderflow_events_published_total{topic=\"order-events\",event_type=\"OrderCreated\"} 3\n# EOF\n")
    )
)]
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

#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "health",
    summary = "Liveness",
    responses((status = 200, description = "The process is running.", body = Live))
)]
async fn live(State(p): State<Probes>) -> Json<Live> {
    Json(Live {
        status: LiveStatus::Live,
        service: p.service.to_owned(),
    })
}

/// Ready when the database answers. The broker and the registry are not
/// asked: without them requests still succeed and their events wait in the
/// outbox (see the module docs and `/health/detail`).
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "health",
    summary = "Readiness: the database answers",
    description = "The database only. With the broker or the schema registry down the service still takes requests and its outbox holds their events until they are back, so it stays ready; `GET /health/detail` shows them.",
    responses(
        (status = 200, description = "The database answers.", body = Ready),
        (status = 503, description = "Not ready: the database does not answer (`status`: `not_ready`).", body = Ready)
    )
)]
async fn ready(State(p): State<Probes>) -> Response {
    let database = check_database(&p).await;
    let ok = database.is_ok();
    let body = Ready {
        status: if ok {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        },
        service: p.service.to_owned(),
        checks: ReadyChecks {
            database: show(database),
        },
    };
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
#[utoipa::path(
    get,
    path = "/health/detail",
    operation_id = "detail",
    tag = "health",
    summary = "Every dependency, the consumer's partitions and the outbox backlog",
    description = "Checks the database, the Kafka brokers and the schema registry (2 s each at most) and sets the `orderflow_dependency_up{dependency}` gauges. Always 200: for people and dashboards, not a probe.",
    responses((status = 200, description = "The checks.", body = Detail))
)]
async fn detail(State(p): State<Probes>) -> Json<Detail> {
    let (all_up, checks) = check_dependencies(&p).await;
    let outbox = async {
        let mut conn = p.pool.acquire().await.map_err(|e| e.to_string())?;
        orderflow_events::outbox::backlog(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let outbox = match time_out(tokio::time::timeout(CHECK_TIMEOUT, outbox).await) {
        Ok((backlog, age)) => OutboxState::Backlog {
            backlog,
            oldest_age_seconds: age,
        },
        Err(error) => OutboxState::Error { error },
    };
    let consumers: Vec<_> = orderflow_events::consumer::assignment::snapshot()
        .into_iter()
        .filter(|a| {
            p.consumer_group
                .as_ref()
                .is_some_and(|g| of_service(g, &a.group))
        })
        .collect();
    Json(Detail {
        status: if all_up {
            DetailStatus::Ok
        } else {
            DetailStatus::Degraded
        },
        service: p.service.to_owned(),
        checks,
        consumers,
        outbox,
    })
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
#[utoipa::path(
    get,
    path = "/health/consumers",
    operation_id = "consumers",
    tag = "health",
    summary = "Consumer assignment: the partitions this process's consumer group members hold",
    description = "200 once each of the service's consumer groups (its own and its projections', `<group>.<projection>`) holds at least one partition, or when the service consumes nothing (`none`); 503 while one holds none (not yet subscribed, waiting for its group's rebalance). `scripts/up` waits for it before it reports the stack up. Not a readiness probe: with more replicas than partitions, a spare member rightly holds none.",
    responses(
        (status = 200, description = "Every group holds partitions, or the service has no consumer.", body = Consumers),
        (status = 503, description = "A group holds no partition yet.", body = Consumers)
    )
)]
async fn consumers(State(p): State<Probes>) -> Response {
    let Some(group) = p.consumer_group else {
        return Json(Consumers {
            status: ConsumersStatus::None,
            service: p.service.to_owned(),
            group: None,
            consumers: Vec::new(),
        })
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
    let body = Consumers {
        status: if assigned {
            ConsumersStatus::Assigned
        } else {
            ConsumersStatus::Waiting
        },
        service: p.service.to_owned(),
        group: Some(group),
        consumers: members,
    };
    let status = if assigned {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "health",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document.", body = Object))
)]
async fn openapi(State(p): State<Probes>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        p.openapi.to_string(),
    )
        .into_response()
}

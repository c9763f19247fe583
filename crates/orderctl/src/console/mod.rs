//! `orderctl console`: the event-flow page. A small web server, for
//! operators, that shows
//!
//! - the topology: the five services and their topics (from the broker
//!   access table, [`orderflow_events::access`]), each edge with its
//!   current event rate, consumer lag and dead letters, from the services'
//!   `/metrics`, scraped every `--interval`;
//! - one order's saga as a swimlane: the events of its journal (the order
//!   API's `GET /orders/{id}/journal`) in causal order, each with its hop's
//!   latency ([`saga`]);
//! - the latest dead-lettered records (read from the dead-letter topics),
//!   each with a button that sends it back ([`redrive`]): the one change
//!   the page can make, for a bearer token with the operator role.
//!
//! The page, its script and its style are compiled into the binary: no
//! CDN, nothing fetched at run time but this server's own JSON. It
//! listens on 127.0.0.1 unless told otherwise.

pub mod metrics;
mod redrive;
pub mod saga;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use orderflow_events::access::SERVICES;
use orderflow_events::dead_letters::{read_all, DeadLetter};
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::topics::Stream;
use orderflow_events::TopicCatalog;
use orderflow_service::auth::Verifier;
use orderflow_service::Role;
use serde::Serialize;
use serde_json::json;
use tokio::sync::RwLock;

use crate::dlq::{Broker, Registry};
use crate::token::KeyArgs;
use metrics::{rate, ServiceCounts};

/// `orderctl console` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// Where to serve the page.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// A service's base URL, as `name=url` (e.g.
    /// `--service order-service=http://orders:8080`); repeatable. Services
    /// not given are looked for on 127.0.0.1 at the ports `scripts/up`
    /// uses (order 8080, inventory 8082, payment 8083, shipping 8084,
    /// notification 8085).
    #[arg(long = "service", value_parser = parse_service)]
    pub services: Vec<(String, String)>,
    /// Time between two scrapes of the services' `/metrics`.
    #[arg(long, default_value = "2s", value_parser = crate::load::schedule::parse_positive_duration)]
    pub interval: Duration,
    /// Bearer token for the order API's journal (role operator); by default
    /// one is signed with --key-file.
    #[arg(long, env = "ORDERFLOW_TOKEN")]
    pub token: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The Ed25519 public key (PEM) of the issuer of operators' tokens,
    /// the services' key: with it the page can send dead letters back for
    /// a bearer token with the operator role; without it, it cannot.
    #[arg(long, env = "AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub broker: Broker,
    /// Where the audit records of redrives are encoded.
    #[command(flatten)]
    pub registry: Registry,
}

/// The services and where `scripts/up` runs them.
const DEFAULT_PORTS: [(&str, u16); 5] = [
    ("order-service", 8080),
    ("inventory-service", 8082),
    ("payment-service", 8083),
    ("shipping-service", 8084),
    ("notification-service", 8085),
];

fn parse_service(s: &str) -> Result<(String, String), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("expected name=url, got {s:?}"))?;
    if !DEFAULT_PORTS.iter().any(|(n, _)| *n == name) {
        return Err(format!(
            "unknown service {name:?}: one of {}",
            DEFAULT_PORTS.map(|(n, _)| n).join(", ")
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?}: use an http:// or https:// URL"));
    }
    Ok((name.to_owned(), url.trim_end_matches('/').to_owned()))
}

/// How many dead letters the page lists.
const DEAD_LETTERS_SHOWN: usize = 20;
/// How long one read of the dead-letter topics may take.
const DLQ_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a scrape of one service may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

struct Console {
    http: reqwest::Client,
    /// Service name → base URL, in table order.
    services: Vec<(String, String)>,
    catalog: TopicCatalog,
    token: TokenSource,
    kafka: KafkaConfig,
    topology: RwLock<Topology>,
    /// Verifies the tokens of redrive requests; none: redrives are off.
    verifier: Option<Verifier>,
    registry: Registry,
}

/// Where the token for the order API comes from.
enum TokenSource {
    /// `--token`: used as given.
    Given(String),
    /// Signed with `--key-file` for each request (valid a few minutes), so
    /// a console that runs for months never holds an expired one.
    Signed(KeyArgs),
}

impl TokenSource {
    fn token(&self) -> anyhow::Result<String> {
        match self {
            TokenSource::Given(t) => Ok(t.clone()),
            TokenSource::Signed(key) => key.mint(
                "orderctl-console",
                &[Role::Operator],
                Duration::from_secs(300),
            ),
        }
    }
}

impl Console {
    /// The dead-letter topic of every stream.
    fn dlq_topics(&self) -> Vec<String> {
        crate::dlq::dlq_topics(&self.catalog)
    }
}

/// What the topology view shows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Topology {
    services: Vec<ServiceNode>,
    topics: Vec<TopicNode>,
    edges: Vec<Edge>,
    /// When the services were last scraped (RFC 3339).
    scraped_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceNode {
    name: String,
    url: String,
    /// Its `/metrics` answered the last scrape.
    up: bool,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicNode {
    name: String,
    /// Records on its dead-letter topic, as the services that read it
    /// last counted them.
    dead_letters: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Edge {
    /// `produce` (service → topic) or `consume` (topic → service).
    kind: &'static str,
    service: String,
    topic: String,
    /// Events per second over the last scrape interval (produced, or
    /// read by any of the service's consumer groups).
    rate: Option<f64>,
    /// Records the service's groups are behind on the topic.
    lag: Option<f64>,
    /// Records of the topic the service's groups dead-lettered, in all.
    dead_lettered: Option<f64>,
}

/// Serves the page until Ctrl-C or SIGTERM.
pub async fn run(catalog: TopicCatalog, args: &ConsoleArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token {
        Some(t) => TokenSource::Given(t.clone()),
        None => {
            let source = TokenSource::Signed(args.key.clone());
            // Fail at start, not at the first request, when the key is
            // missing or wrong.
            source.token()?;
            source
        }
    };
    let mut kafka = KafkaConfig::from_env("orderctl-console");
    kafka
        .bootstrap_servers
        .clone_from(&args.broker.bootstrap_servers);
    let services = DEFAULT_PORTS
        .iter()
        .map(|&(name, port)| {
            let url = args
                .services
                .iter()
                .find(|(n, _)| n == name)
                .map_or_else(|| format!("http://127.0.0.1:{port}"), |(_, u)| u.clone());
            (name.to_owned(), url)
        })
        .collect();
    let verifier = match &args.auth_public_key_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --auth-public-key-file {}", path.display()))?;
            Some(Verifier::new(&pem, &args.key.issuer, &args.key.audience)?)
        }
        None => None,
    };
    let console = Arc::new(Console {
        http: reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT * 5)
            .build()?,
        services,
        catalog,
        token,
        kafka,
        topology: RwLock::new(Topology::default()),
        verifier,
        registry: args.registry.clone(),
    });
    tokio::spawn(scrape_forever(console.clone(), args.interval));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!(
        "orderctl console: the event-flow page is on http://{}/",
        listener.local_addr()?
    );
    axum::serve(listener, router(console))
        .with_graceful_shutdown(stopped())
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/errors.js",
            get(|| asset("text/javascript; charset=utf-8", ERRORS_JS)),
        )
        .route(
            "/app.css",
            get(|| asset("text/css; charset=utf-8", APP_CSS)),
        )
        // A page without an icon: the browser's request gets an empty answer.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/topology", get(topology))
        .route("/api/orders/{id}/saga", get(order_saga))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/dead-letters/redrive", post(redrive::redrive))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .with_state(console)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const ERRORS_JS: &str = include_str!("assets/errors.js");
const APP_CSS: &str = include_str!("assets/app.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn topology(State(c): State<Arc<Console>>) -> Json<Topology> {
    Json(c.topology.read().await.clone())
}

async fn order_saga(State(c): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, "the order id must be a UUID");
    };
    let order_url = &c.services[0].1;
    let token = match c.token.token() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    };
    let answer = c
        .http
        .get(format!("{order_url}/orders/{id}/journal"))
        .bearer_auth(token)
        .send()
        .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                &format!("the order service did not answer: {e}"),
            )
        }
    };
    match resp.status() {
        reqwest::StatusCode::OK => {}
        reqwest::StatusCode::NOT_FOUND => return error(StatusCode::NOT_FOUND, "no such order"),
        s => {
            return error(
                StatusCode::BAD_GATEWAY,
                &format!("the order service answered {s} for the journal"),
            )
        }
    }
    match resp.json::<saga::Journal>().await {
        Ok(j) => Json(json!({ "orderId": id, "steps": saga::steps(&j.events) })).into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            &format!("the order service's journal did not parse: {e}"),
        ),
    }
}

async fn dead_letters(State(c): State<Arc<Console>>) -> Response {
    let topics = c.dlq_topics();
    let kafka = c.kafka.clone();
    let read =
        tokio::task::spawn_blocking(move || read_all(&kafka, &topics, DLQ_READ_TIMEOUT)).await;
    let mut letters: Vec<DeadLetter> = match read {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return error(StatusCode::BAD_GATEWAY, &e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let total = letters.len();
    letters.sort_by_key(|l| std::cmp::Reverse(l.timestamp));
    letters.truncate(DEAD_LETTERS_SHOWN);
    Json(json!({ "total": total, "latest": letters })).into_response()
}

/// Scrapes every service each `interval` and keeps the topology.
async fn scrape_forever(c: Arc<Console>, interval: Duration) {
    let mut previous: Option<(Instant, BTreeMap<String, ServiceCounts>)> = None;
    let mut tick = tokio::time::interval(interval);
    // A scrape slower than the interval delays the next one; no bursts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let scrapes = futures::future::join_all(
            c.services
                .iter()
                .map(|(name, url)| scrape(&c.http, name, url)),
        )
        .await;
        let mut nodes = Vec::new();
        let mut counts = BTreeMap::new();
        for ((name, url), result) in c.services.iter().zip(scrapes) {
            let (up, error) = match result {
                Ok(sc) => {
                    counts.insert(name.clone(), sc);
                    (true, None)
                }
                Err(e) => (false, Some(e)),
            };
            nodes.push(ServiceNode {
                name: name.clone(),
                url: url.clone(),
                up,
                error,
            });
        }
        let before = previous
            .as_ref()
            .map(|(at, c)| (now.duration_since(*at).as_secs_f64(), c));
        let topology = Topology {
            services: nodes,
            topics: topics(&c.catalog, &counts),
            edges: edges(&c.catalog, &counts, before),
            scraped_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        };
        *c.topology.write().await = topology;
        previous = Some((now, counts));
    }
}

async fn scrape(http: &reqwest::Client, name: &str, url: &str) -> Result<ServiceCounts, String> {
    let text = http
        .get(format!("{url}/metrics"))
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{name}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(ServiceCounts::of(&metrics::parse(&text)))
}

/// The saga's topics and the audit trail's, with their dead letters.
fn topics(catalog: &TopicCatalog, counts: &BTreeMap<String, ServiceCounts>) -> Vec<TopicNode> {
    Stream::ALL
        .iter()
        .map(|&s| {
            let name = catalog.topic(s).to_owned();
            let dlq = catalog.dlq_topic(&name);
            let dead_letters = counts
                .values()
                .filter_map(|c| c.dlq_records.get(&dlq).copied())
                .reduce(f64::max);
            TopicNode { name, dead_letters }
        })
        .collect()
}

/// Every producing and consuming edge of the access table, with the
/// numbers of the last scrape (and rates against the one before).
fn edges(
    catalog: &TopicCatalog,
    counts: &BTreeMap<String, ServiceCounts>,
    before: Option<(f64, &BTreeMap<String, ServiceCounts>)>,
) -> Vec<Edge> {
    let rate_of =
        |service: &str, topic: &str, pick: fn(&ServiceCounts) -> &BTreeMap<String, f64>| {
            let now = counts
                .get(service)
                .map(|c| pick(c).get(topic).copied().unwrap_or(0.0))?;
            let (secs, prev) = before?;
            let was = prev
                .get(service)
                .map(|c| pick(c).get(topic).copied().unwrap_or(0.0));
            Some(rate(was, now, secs))
        };
    let mut out = Vec::new();
    for s in &SERVICES {
        let service = s.principal;
        let mut writes = vec![s.owns];
        if s.audits {
            writes.push(Stream::Audit);
        }
        for w in writes {
            let topic = catalog.topic(w);
            out.push(Edge {
                kind: "produce",
                service: service.to_owned(),
                topic: topic.to_owned(),
                rate: rate_of(service, topic, |c| &c.published),
                lag: None,
                dead_lettered: None,
            });
        }
        for r in s.all_reads() {
            let topic = catalog.topic(r);
            let c = counts.get(service);
            out.push(Edge {
                kind: "consume",
                service: service.to_owned(),
                topic: topic.to_owned(),
                rate: rate_of(service, topic, |c| &c.consumed),
                lag: c.map(|c| c.lag.get(topic).copied().unwrap_or(0.0)),
                dead_lettered: c.map(|c| c.dead_lettered.get(topic).copied().unwrap_or(0.0)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    fn console() -> Arc<Console> {
        console_with(None)
    }

    /// A console whose services and broker are unreachable (port 9).
    pub(super) fn console_with(verifier: Option<Verifier>) -> Arc<Console> {
        Arc::new(Console {
            http: reqwest::Client::new(),
            // Nothing listens on port 9: the order service is down.
            services: DEFAULT_PORTS
                .iter()
                .map(|(n, _)| ((*n).to_owned(), "http://127.0.0.1:9".to_owned()))
                .collect(),
            catalog: TopicCatalog::default(),
            token: TokenSource::Given("t".to_owned()),
            kafka: KafkaConfig::new("127.0.0.1:9", "test"),
            topology: RwLock::new(Topology::default()),
            verifier,
            registry: Registry {
                registry_url: "http://127.0.0.1:9".to_owned(),
            },
        })
    }

    async fn get(path: &str) -> (StatusCode, String, Option<String>) {
        let r = router(console())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let csp = r
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), csp)
    }

    #[test]
    fn a_signed_token_is_fresh_for_each_request_and_a_missing_key_is_an_error() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let key = |file: &str| KeyArgs {
            key_file: root.join(file),
            issuer: "orderflow".into(),
            audience: "orderflow".into(),
        };
        let source = TokenSource::Signed(key(crate::token::DEV_KEY));
        let public = std::fs::read(root.join("deploy/dev-keys/jwt-dev.pub.pem")).expect("pub");
        let v = Verifier::new(&public, "orderflow", "orderflow").expect("verifier");
        let claims = v.verify(&source.token().expect("a token")).expect("valid");
        assert_eq!(claims.roles, vec![Role::Operator]);
        assert!(claims.exp <= claims.iat + 300, "short-lived: {claims:?}");
        let missing = TokenSource::Signed(key("deploy/dev-keys/nope.pem"));
        let e = missing.token().expect_err("no such key");
        assert!(format!("{e:#}").contains("nope.pem"), "{e:#}");
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let (status, body, csp) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<script src=\"/app.js\""), "{body}");
        assert_eq!(csp.as_deref(), Some("default-src 'self'"));
        for path in ["/app.js", "/errors.js", "/app.css"] {
            assert_eq!(get(path).await.0, StatusCode::OK, "{path}");
        }
        assert!(
            !INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"),
            "nothing loaded from elsewhere"
        );
        assert_eq!(get("/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_saga_needs_a_uuid_and_says_when_the_order_service_is_down() {
        let (status, body, _) = get("/api/orders/not-a-uuid/saga").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("must be a UUID"), "{body}");
        let (status, body, _) = get("/api/orders/01a24394-b902-7420-8184-3917bdac492e/saga").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    }

    #[test]
    fn every_edge_of_the_access_table_with_rates_from_two_scrapes() {
        let catalog = TopicCatalog::default();
        let text = |n: f64| {
            format!(
                "orderflow_events_consumed_total{{group=\"payment-service\",topic=\"order-events\",event_type=\"OrderCreated\",outcome=\"applied\"}} {n}\n\
                 orderflow_consumer_lag{{group=\"payment-service\",topic=\"order-events\",partition=\"3\"}} 5\n\
                 orderflow_events_published_total{{topic=\"payment-events\",event_type=\"PaymentProcessed\"}} {n}\n"
            )
        };
        let first = BTreeMap::from([(
            "payment-service".to_owned(),
            ServiceCounts::of(&metrics::parse(&text(10.0))),
        )]);
        let second = BTreeMap::from([(
            "payment-service".to_owned(),
            ServiceCounts::of(&metrics::parse(&text(30.0))),
        )]);
        let e = edges(&catalog, &second, Some((2.0, &first)));
        let find = |kind: &str, service: &str, topic: &str| {
            e.iter()
                .find(|x| x.kind == kind && x.service == service && x.topic == topic)
                .unwrap_or_else(|| panic!("{kind} {service} {topic} in {e:#?}"))
        };
        let read = find("consume", "payment-service", "order-events");
        assert_eq!(read.rate, Some(10.0));
        assert_eq!(read.lag, Some(5.0));
        assert_eq!(
            find("produce", "payment-service", "payment-events").rate,
            Some(10.0)
        );
        assert_eq!(
            find("produce", "payment-service", "audit-events").rate,
            Some(0.0)
        );
        // A service not scraped has no numbers, but its edges are there.
        let down = find("consume", "shipping-service", "payment-events");
        assert_eq!((down.rate, down.lag), (None, None));
        // Every service writes its own topic; the journal reads order-events.
        for s in &SERVICES {
            find("produce", s.principal, catalog.topic(s.owns));
        }
        find("consume", "order-service", "order-events");
        // One scrape: numbers but no rates yet.
        assert_eq!(
            edges(&catalog, &second, None)
                .iter()
                .find(|x| x.kind == "consume"
                    && x.service == "payment-service"
                    && x.topic == "order-events")
                .unwrap()
                .rate,
            None
        );
    }
}

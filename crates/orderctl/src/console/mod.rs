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
//!   the page can make.
//!
//! Every `/api` route, reads included, needs a bearer token with the
//! operator role ([`access`]), which the page asks for and keeps in the
//! tab; the console does not start without the key to verify it with.
//! The page, its script and its style are compiled into the binary: no
//! CDN, nothing fetched at run time but this server's own JSON. It
//! listens on 127.0.0.1 unless told otherwise.

mod access;
pub mod metrics;
mod redrive;
pub mod saga;
mod topology;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use orderflow_events::dead_letters::{read_latest, DeadLetter};
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::TopicCatalog;
use orderflow_service::auth::Verifier;
use orderflow_service::Role;
use serde_json::json;
use tokio::sync::RwLock;

use crate::dlq::{Broker, Registry};
use crate::token::KeyArgs;
use topology::{scrape_forever, Topology};

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
    /// the services' key: the page's data and its button are for a bearer
    /// token with the operator role, verified with it. Required.
    #[arg(long, env = "AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<std::path::PathBuf>,
    /// The same key as PEM text, or the base64 line of its PEM (instead of
    /// a file), as the services take it, e.g. from their ConfigMap.
    #[arg(long, env = "AUTH_PUBLIC_KEY", conflicts_with = "auth_public_key_file")]
    pub auth_public_key: Option<String>,
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
/// How long the order API may take to answer.
const ORDER_API_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read of the dead-letter topics may take.
const DLQ_READ_TIMEOUT: Duration = Duration::from_secs(20);

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
    let pem = match (&args.auth_public_key, &args.auth_public_key_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("reading --auth-public-key-file {}", path.display()))?,
        (None, None) => anyhow::bail!(
            "the page shows the system's data to operators only: give --auth-public-key-file \
             (AUTH_PUBLIC_KEY_FILE) or --auth-public-key (AUTH_PUBLIC_KEY), the key the \
             services verify bearer tokens with"
        ),
    };
    let verifier = Some(Verifier::new(&pem, &args.key.issuer, &args.key.audience)?);
    let console = Arc::new(Console {
        http: reqwest::Client::builder()
            .timeout(ORDER_API_TIMEOUT)
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
        // For a container's probes: the server answers. It says nothing of
        // the system, so it needs no token.
        .route("/health/live", get(|| async { "ok" }))
        .merge(api(console.clone()))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .with_state(console)
}

/// The page's data and its one action, each for an operator only
/// ([`access::require_operator`] runs before every handler).
fn api(console: Arc<Console>) -> Router<Arc<Console>> {
    Router::new()
        .route("/api/topology", get(topology))
        .route("/api/orders/{id}/saga", get(order_saga))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/dead-letters/redrive", post(redrive::redrive))
        .route_layer(axum::middleware::from_fn_with_state(
            console,
            access::require_operator,
        ))
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
    // The tail of each partition only: the page asks every 15 s, and a
    // dead-letter topic may hold a great many records.
    let read = tokio::task::spawn_blocking(move || {
        read_latest(
            &kafka,
            &topics,
            DEAD_LETTERS_SHOWN as u32,
            DEAD_LETTERS_SHOWN,
            DLQ_READ_TIMEOUT,
        )
    })
    .await;
    let (total, letters): (u64, Vec<DeadLetter>) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return error(StatusCode::BAD_GATEWAY, &e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    Json(json!({ "total": total, "latest": letters })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::access::testing::{token, verifier};
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
                registry_user_info: None,
            },
        })
    }

    async fn get(path: &str) -> (StatusCode, String, Option<String>) {
        get_as(console(), path, None).await
    }

    /// `GET path` with `authorization` as the header's value, if any.
    async fn get_as(
        console: Arc<Console>,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, String, Option<String>) {
        let mut req = Request::get(path);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let r = router(console)
            .oneshot(req.body(Body::empty()).unwrap())
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
    async fn the_liveness_probe_answers_without_a_token_and_says_nothing_of_the_system() {
        let (status, body, _) = get("/health/live").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok");
    }

    #[tokio::test]
    async fn a_saga_needs_a_uuid_and_says_when_the_order_service_is_down() {
        let operator = format!("Bearer {}", token("ops", &[Role::Operator]));
        let get = |path| get_as(console_with(Some(verifier())), path, Some(&operator));
        let (status, body, _) = get("/api/orders/not-a-uuid/saga").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("must be a UUID"), "{body}");
        let (status, body, _) = get("/api/orders/01a24394-b902-7420-8184-3917bdac492e/saga").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    }

    #[tokio::test]
    async fn every_api_route_is_for_operators_only() {
        let customer = format!("Bearer {}", token("c-1", &[Role::Customer]));
        let operator = format!("Bearer {}", token("ops", &[Role::Operator]));
        for path in [
            "/api/topology",
            "/api/dead-letters",
            "/api/orders/01a24394-b902-7420-8184-3917bdac492e/saga",
        ] {
            let (status, body, _) = get_as(console_with(Some(verifier())), path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            let (status, _, _) =
                get_as(console_with(Some(verifier())), path, Some("Bearer nope")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            let (status, body, _) =
                get_as(console_with(Some(verifier())), path, Some(&customer)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
            assert!(body.contains("operator role"), "{path}: {body}");
            let (status, body, _) = get_as(console(), path, Some(&operator)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        }
        // The topology needs nothing else: an operator sees it.
        let (status, body, _) = get_as(
            console_with(Some(verifier())),
            "/api/topology",
            Some(&operator),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

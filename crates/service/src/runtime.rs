//! Startup, the task set of a service, and graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use orderflow_events::codec::AvroCodec;
use orderflow_events::consumer::{ConsumerOptions, EventConsumer};
use orderflow_events::kafka::{BrokerProbe, KafkaConfig};
use orderflow_events::registry::RegistryClient;
use orderflow_events::relay::{Relay, RelayOptions};
use orderflow_events::TopicCatalog;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::Verifier;
use crate::config::{CommonConfig, LogFormat, Migrations};
use crate::database::{apply_migrations, connect};
use crate::error::{method_not_allowed_fallback, not_found_fallback};
use crate::extract::BODY_LIMIT;
use crate::health::{self, Probes};
use crate::openapi::ApiRouter;
use crate::telemetry::{self, Telemetry};

/// Longest wait for buffered spans to be exported on shutdown.
const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a service is.
pub struct ServiceSpec {
    /// Short name, e.g. `order`; the process is `<name>-service`.
    pub name: &'static str,
    /// `source` of the events it emits and its Kafka client id, e.g.
    /// `order-service`.
    pub source: &'static str,
    /// HTTP port when `HTTP_PORT` is not set.
    pub default_port: u16,
    /// The service's own migrations (versions must not collide with the
    /// shared outbox/inbox ones, 1 and 2).
    pub migrator: &'static Migrator,
}

/// What a service's build function gets.
#[derive(Clone)]
pub struct Context {
    /// The service's database, for consumers and background tasks.
    pub pool: PgPool,
    /// The same database for HTTP handlers: a pool of its own
    /// (`DATABASE_API_CONNECTIONS`), so that a request does not queue
    /// behind the consumers when they are behind and busy. The same pool
    /// as `pool` when that is 0.
    pub api_pool: PgPool,
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub catalog: TopicCatalog,
    /// The Avro codec.
    pub codec: Arc<AvroCodec>,
    /// Cancelled when the service shuts down.
    pub shutdown: CancellationToken,
    /// `source` of emitted events.
    pub source: &'static str,
    /// Kafka consumer group of the service: `KAFKA_CONSUMER_GROUP`, or the
    /// topic prefix (`ORDERFLOW_TOPIC_PREFIX`) followed by `source`, so
    /// environments isolated by a topic prefix do not share groups.
    pub consumer_group: String,
    /// Consumer workers per topic (`CONSUMER_WORKERS_PER_TOPIC`).
    pub consumer_workers_per_topic: usize,
    /// Most records per consumer transaction (`CONSUMER_MAX_BATCH`).
    pub consumer_max_batch: usize,
    /// Event types dead-lettered instead of handled (`CONSUMER_QUARANTINE`).
    pub consumer_quarantine: Vec<orderflow_events::EventType>,
}

impl Context {
    /// The service's event consumer (its group, database, codec and topics)
    /// with [`consumer_options`](Self::consumer_options); the service adds
    /// its handlers.
    pub fn consumer(&self) -> EventConsumer {
        EventConsumer::new(
            &self.kafka,
            &self.consumer_group,
            self.pool.clone(),
            self.codec.clone(),
            self.catalog.clone(),
        )
        .with_options(self.consumer_options())
    }

    /// The default consumer options with this service's workers per topic
    /// and batch size: what a service's consumer starts from.
    pub fn consumer_options(&self) -> ConsumerOptions {
        ConsumerOptions {
            workers_per_topic: self.consumer_workers_per_topic,
            max_batch: self.consumer_max_batch,
            quarantine: self.consumer_quarantine.clone(),
            ..ConsumerOptions::default()
        }
    }
}

/// A background task: runs until the token is cancelled.
pub type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// What a service is made of.
pub struct Parts {
    /// Its HTTP API, documented (health, metrics and OpenAPI routes are
    /// added; see [`crate::openapi`]).
    pub router: ApiRouter,
    /// Its event consumer, if it consumes.
    pub consumer: Option<EventConsumer>,
    /// Other long-running tasks (e.g. a deadline sweeper).
    pub tasks: Vec<(&'static str, Task)>,
}

/// Initialises logging from `RUST_LOG` (default `info`) in `format`, with
/// OpenTelemetry trace ids but no span export (see [`telemetry::init`]).
pub fn init_logging(format: LogFormat) {
    let _ = telemetry::init("orderflow", format);
}

/// Runs a service until SIGINT/SIGTERM or until one of its tasks fails.
pub async fn run<F>(spec: ServiceSpec, config: CommonConfig, build: F) -> anyhow::Result<()>
where
    F: FnOnce(&Context) -> anyhow::Result<Parts>,
{
    let telemetry = telemetry::init(spec.source, config.log_format);
    let result = run_service(spec, config, build, &telemetry).await;
    telemetry.shutdown(TRACE_FLUSH_TIMEOUT).await;
    result
}

async fn run_service<F>(
    spec: ServiceSpec,
    config: CommonConfig,
    build: F,
    telemetry: &Telemetry,
) -> anyhow::Result<()>
where
    F: FnOnce(&Context) -> anyhow::Result<Parts>,
{
    crate::config::reject_renamed_settings(|name| std::env::var_os(name).is_some())?;
    // A server without a way to check its callers must not start (a
    // migration job needs none).
    let verifier = if config.migrate_only {
        None
    } else {
        Some(Arc::new(config.token_verifier()?))
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_listener(shutdown.clone()));

    let database_url = config.database_url_or_default(spec.name);
    let migrator = Migrator {
        migrations: spec.migrator.migrations.clone(),
        ignore_missing: true,
        locking: spec.migrator.locking,
        no_tx: spec.migrator.no_tx,
    };
    if config.migrate_only || config.migrations == Migrations::Apply {
        let url = config
            .migration_database_url
            .as_deref()
            .unwrap_or(&database_url);
        let owner = connect(url, 2, &shutdown).await?;
        let applied = apply_migrations(&owner, &migrator, spec.name, &shutdown).await;
        owner.close().await;
        applied?;
    }
    if config.migrate_only {
        tracing::info!(
            service = spec.source,
            "migrations applied (--migrate-only); exiting"
        );
        return Ok(());
    }
    let pool = connect(&database_url, config.database_max_connections, &shutdown).await?;
    if config.migrations == Migrations::Verify {
        crate::migrations::verify(&pool, &[&orderflow_events::migrator(), &migrator])
            .await
            .with_context(|| format!("checking the {} migrations", spec.name))?;
    }
    let api_pool = match config.database_api_connections {
        0 => pool.clone(),
        n => connect(&database_url, n, &shutdown).await?,
    };

    let mut kafka = KafkaConfig::from_env(spec.source);
    kafka.bootstrap_servers = config.kafka_bootstrap_servers.clone();
    let catalog = TopicCatalog::from_env().context("invalid topic configuration")?;
    let registry = RegistryClient::new(&config.schema_registry_url)
        .context("invalid SCHEMA_REGISTRY_URL")?
        .with_user_info(config.schema_registry_user_info.as_deref())
        .context("invalid SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO")?;
    let codec = Arc::new(
        AvroCodec::new(registry.clone(), config.schema_auto_register)
            .context("loading the schemas")?,
    );
    let ctx = Context {
        pool: pool.clone(),
        api_pool: api_pool.clone(),
        kafka: kafka.clone(),
        catalog,
        codec: codec.clone(),
        shutdown: shutdown.clone(),
        source: spec.source,
        consumer_group: std::env::var("KAFKA_CONSUMER_GROUP")
            .ok()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}{}",
                    std::env::var("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default(),
                    spec.source
                )
            }),
        consumer_workers_per_topic: usize::from(config.consumer_workers_per_topic),
        consumer_max_batch: usize::from(config.consumer_max_batch),
        consumer_quarantine: config.consumer_quarantine.clone(),
    };
    orderflow_events::metrics::pipeline();
    telemetry::register_http_metrics();
    health::register_metrics();
    let parts = build(&ctx)?;

    let (service_routes, api) = parts.router.split();
    let probes = Probes {
        pool: api_pool.clone(),
        broker: Arc::new(BrokerProbe::new(&kafka).context("creating the broker probe")?),
        registry,
        openapi: Arc::from(crate::openapi::to_text(&crate::openapi::document(
            &spec, api,
        ))),
        service: spec.source,
        consumer_group: parts.consumer.as_ref().map(|_| ctx.consumer_group.clone()),
        dlq_topics: parts
            .consumer
            .as_ref()
            .map(|c| {
                c.topics()
                    .iter()
                    .map(|t| ctx.catalog.dlq_topic(t))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let (runtime_routes, _) = health::routes().with_state(probes).split();
    let app = app(
        service_routes.merge(runtime_routes),
        verifier.context("the token verifier is made before serving")?,
    );
    let app = crate::limits::apply(
        app,
        config.http_request_timeout,
        config.http_max_concurrent_requests as usize,
    )
    .layer(axum::middleware::from_fn(telemetry::observe_http));
    let addr = config.http_addr(spec.default_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(service = spec.source, %addr, "listening");

    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let token = shutdown.clone();
    tasks.spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .context("HTTP server");
        ("http", r)
    });
    let relay = Relay::new(pool.clone(), &kafka, codec.clone(), RelayOptions::default())
        .context("creating the outbox relay")?;
    let token = shutdown.clone();
    tasks.spawn(async move { ("relay", relay.run(token).await.map_err(Into::into)) });
    if let Some(consumer) = parts.consumer {
        let token = shutdown.clone();
        tasks.spawn(async move { ("consumer", consumer.run(token).await.map_err(Into::into)) });
    }
    for (name, task) in parts.tasks {
        tasks.spawn(async move { (name, task.await) });
    }
    if let Some(every) = config.inbox_prune_interval.0 {
        let (pool, catalog, token) = (pool.clone(), ctx.catalog.clone(), shutdown.clone());
        let margin = config.inbox_retention_margin;
        tasks.spawn(async move {
            prune_inbox(pool, catalog, every, margin, token).await;
            ("inbox pruner", Ok(()))
        });
    }

    let mut failure: Option<anyhow::Error> = None;
    // Until shutdown is requested, any task ending is a failure. Checked
    // first: a task that stops because shutdown was requested (the HTTP
    // server drains) can be ready in the same poll, and is no failure.
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        Some(joined) = tasks.join_next() => {
            let (name, result) = joined.context("a task panicked")?;
            let err = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped unexpectedly"));
            tracing::error!(task = name, error = format!("{err:#}"), "task failed; shutting down");
            failure = Some(err.context(format!("task {name}")));
            shutdown.cancel();
        }
    }
    let grace = config.shutdown_grace();
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, Err(e))) => tracing::error!(
                    task = name,
                    error = format!("{e:#}"),
                    "task failed while stopping"
                ),
                Ok((name, Ok(()))) => tracing::debug!(task = name, "task stopped"),
                Err(e) => tracing::error!(error = %e, "task panicked while stopping"),
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        // Whatever is still running holds no state that matters: effects
        // are committed or not, offsets are stored only after commits, and
        // unpublished outbox rows stay in the table. Leave without waiting
        // for blocked clients (the runtime would wait for them on drop).
        tracing::warn!(
            ?grace,
            "tasks still running after the grace period; exiting anyway"
        );
        if let Some(e) = &failure {
            eprintln!("{}: {e:#}", spec.source);
        }
        telemetry.shutdown(TRACE_FLUSH_TIMEOUT).await;
        std::process::exit(if failure.is_some() { 1 } else { 0 });
    }
    let closed = async { tokio::join!(pool.close(), api_pool.close()) };
    if tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .is_err()
    {
        tracing::warn!("database connections still busy after 5 s; closing anyway");
    }
    tracing::info!(service = spec.source, "stopped");
    failure.map_or(Ok(()), Err)
}

/// A service's routes as they are served, less the request limits and
/// metrics: JSON answers for unknown routes and methods, the body limit,
/// and the token verifier that [`crate::Principal`] reads. Router-level
/// tests use the same function (`crate::testing::TestApp`).
pub fn app(router: Router, verifier: Arc<Verifier>) -> Router {
    router
        .fallback(not_found_fallback)
        .method_not_allowed_fallback(method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(verifier))
}

/// Cancels `token` on SIGINT (Ctrl-C) or SIGTERM.
async fn signal_listener(token: CancellationToken) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}

/// Deletes the inbox rows that can no longer meet a copy of their event
/// ([`orderflow_events::inbox::prune`]): a minute after the start, then
/// every `every`, until shutdown. A failure is logged and tried again at
/// the next round: nothing depends on it but the table's size.
async fn prune_inbox(
    pool: sqlx::PgPool,
    catalog: TopicCatalog,
    every: std::time::Duration,
    margin: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut wait = every.min(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        match orderflow_events::inbox::prune(&pool, &catalog, margin).await {
            Ok(pruned) => {
                for (topic, rows) in pruned {
                    tracing::info!(%topic, rows, "pruned inbox rows past the topic's retention");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning the inbox failed; trying again later"),
        }
    }
}

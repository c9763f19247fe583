//! What a stack is made of: the five services, and the options of a
//! stack (its own infrastructure, timeouts, settings per service).

use super::*;

/// One of the five services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `order-service`.
    Order,
    /// `inventory-service`.
    Inventory,
    /// `payment-service`.
    Payment,
    /// `shipping-service`.
    Shipping,
    /// `notification-service`.
    Notification,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 5] = [
        Service::Order,
        Service::Inventory,
        Service::Payment,
        Service::Shipping,
        Service::Notification,
    ];

    /// Short name (`order`), used in database and log file names.
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Shipping => "shipping",
            Service::Notification => "notification",
        }
    }

    /// Binary name (`order-service`).
    pub fn binary(self) -> String {
        format!("{}-service", self.name())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SMTP listener of a stack: a real server that stores every message
/// it accepts in the stack's Maildir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Smtp {
    /// Python's `aiosmtpd` (`ORDERFLOW_PYTHON`), an implementation that is
    /// not ours.
    #[default]
    Aiosmtpd,
    /// `orderctl smtp-sink`, a few times cheaper per message (the
    /// benchmark's).
    Orderctl,
    /// One the caller runs on [`StackOptions::smtp_port`], which must be
    /// set (`scripts/up` starts its own, as infrastructure).
    External,
}

/// How to start a stack. The default is the end-to-end tests': settings
/// that let two stacks share a machine and tests end quickly;
/// [`StackOptions::deployed`] leaves every service setting at its default,
/// as `scripts/up` runs them.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The stack's id: its databases are `<id>_<service>`, its topics
    /// `<id>.<topic>`. A random `e2e_<8 hex>` if unset; databases of that
    /// name are dropped first.
    pub id: Option<String>,
    /// Prefix of its topics and consumer groups (default `<id>.`).
    pub topic_prefix: Option<String>,
    /// Where the logs, the Maildir and the pid files go (default
    /// `$CARGO_TARGET_DIR/e2e-logs/<id>`).
    pub log_dir: Option<PathBuf>,
    /// The services' databases are `<id>_<service>`, dropped and made anew
    /// at start, unless this names them (`{service}` is replaced by the
    /// service's name, e.g. `{service}_service`): then they are kept
    /// between runs (made when missing).
    pub kept_databases: Option<String>,
    /// Fixed ports of services (free ones are picked for the others).
    pub ports: BTreeMap<Service, u16>,
    /// `HTTP_HOST` of the services.
    pub http_host: String,
    /// The public key the services check tokens with (default the
    /// development key, `deploy/dev-keys/jwt-dev.pub.pem`).
    pub auth_public_key_file: Option<PathBuf>,
    /// The SMTP listener.
    pub smtp: Smtp,
    /// Its fixed port (a free one if unset).
    pub smtp_port: Option<u16>,
    /// Its Maildir (default `<log dir>/maildir`).
    pub maildir: Option<PathBuf>,
    /// `ORDER_SAGA_TIMEOUT` of the order service. Long by default so the
    /// deadline sweeper never interferes with a test that does not test it.
    pub saga_timeout: Option<String>,
    /// `ORDER_DEADLINE_CHECK_INTERVAL` of the order service.
    pub deadline_check_interval: Option<String>,
    /// `PAYMENT_MAX_AMOUNT` of the payment service (service default if unset).
    pub payment_max_amount: Option<i64>,
    /// Partition count of every topic (the real table if unset; the
    /// environment variable `ORDERFLOW_E2E_PARTITIONS` sets the default).
    pub partitions: Option<i32>,
    /// `DATABASE_MAX_CONNECTIONS` of every service (default 4: two stacks
    /// of five services, the registry and whatever else shares the server
    /// must fit into PostgreSQL's default 100 connections; a service that
    /// meets "too many clients" while migrating exits).
    pub database_max_connections: Option<u32>,
    /// `DATABASE_API_CONNECTIONS` of every service (default 1, for the same
    /// reason).
    pub database_api_connections: Option<u32>,
    /// `RUST_LOG` of every service.
    pub rust_log: String,
    /// Plain-text logs without colours (`LOG_FORMAT=text`, `NO_COLOR=1`)
    /// instead of the services' default JSON lines.
    pub text_logs: bool,
    /// Extra environment variables per service.
    pub env: Vec<(Service, String, String)>,
    /// How long a service may take to become ready.
    pub ready_timeout: Duration,
    /// `session.timeout.ms` of the services' Kafka consumers
    /// (`KAFKA_PROP_SESSION_TIMEOUT_MS`). Short, so that a SIGKILLed
    /// consumer leaves its group quickly: a dead member stalls the next
    /// rebalance of its group until its session expires. (Each stack has
    /// groups of its own: the services prefix their group ids with the
    /// topic prefix.)
    pub kafka_session_timeout_ms: Option<u32>,
    /// Run a broker of the stack's own (`BROKER_BIN`, on its durable
    /// `sqlite://` engine in the stack's log directory, as `scripts/up`
    /// runs it) instead of the shared one, so a test can stop and restart
    /// it ([`Stack::stop_broker`], [`Stack::start_broker`]).
    pub own_broker: bool,
    /// Run a PostgreSQL server of the stack's own (a new cluster in the
    /// temporary directory) for the services' databases, so a test can
    /// crash and restart it ([`Stack::stop_postgres`]).
    pub own_postgres: bool,
    /// Run a schema registry of the stack's own (the workspace's, on the
    /// stack's PostgreSQL), so a test can stop it ([`Stack::stop_registry`]).
    pub own_registry: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            id: None,
            topic_prefix: None,
            log_dir: None,
            kept_databases: None,
            ports: BTreeMap::new(),
            http_host: "127.0.0.1".into(),
            auth_public_key_file: None,
            smtp: Smtp::default(),
            smtp_port: None,
            maildir: None,
            saga_timeout: Some("600s".into()),
            deadline_check_interval: Some("1s".into()),
            payment_max_amount: None,
            partitions: env::partitions_override(),
            database_max_connections: Some(4),
            database_api_connections: Some(1),
            rust_log: std::env::var("ORDERFLOW_E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            text_logs: true,
            env: Vec::new(),
            ready_timeout: Duration::from_secs(90),
            kafka_session_timeout_ms: Some(6000),
            own_broker: false,
            own_postgres: false,
            own_registry: false,
        }
    }
}

impl StackOptions {
    /// Every service setting at the service's own default (pools, saga
    /// deadline, consumer sessions, JSON logs at `RUST_LOG`, default
    /// `info`), the real partition counts, as `scripts/up` runs the
    /// services, and the topics' own names (no prefix): what `orderctl
    /// bench run` measures. Only the id (the databases' prefix), the log
    /// directory and the SMTP listener are the caller's.
    pub fn deployed(id: &str, log_dir: PathBuf, smtp: Smtp) -> Self {
        Self {
            id: Some(id.to_owned()),
            topic_prefix: Some(String::new()),
            log_dir: Some(log_dir),
            kept_databases: None,
            ports: BTreeMap::new(),
            http_host: "127.0.0.1".into(),
            auth_public_key_file: None,
            smtp,
            smtp_port: None,
            maildir: None,
            saga_timeout: None,
            deadline_check_interval: None,
            payment_max_amount: None,
            partitions: None,
            database_max_connections: None,
            database_api_connections: None,
            rust_log: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            text_logs: false,
            env: Vec::new(),
            ready_timeout: Duration::from_secs(90),
            kafka_session_timeout_ms: None,
            own_broker: false,
            own_postgres: false,
            own_registry: false,
        }
    }
}

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

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `ORDER_SAGA_TIMEOUT` of the order service. Long by default so the
    /// deadline sweeper never interferes with a test that does not test it.
    pub saga_timeout: String,
    /// `ORDER_DEADLINE_CHECK_INTERVAL` of the order service.
    pub deadline_check_interval: String,
    /// `PAYMENT_MAX_AMOUNT` of the payment service (service default if unset).
    pub payment_max_amount: Option<i64>,
    /// Partition count of every topic (the real table if unset; the
    /// environment variable `ORDERFLOW_E2E_PARTITIONS` sets the default).
    pub partitions: Option<i32>,
    /// `DATABASE_MAX_CONNECTIONS` of every service (default 4: two stacks
    /// of five services, the registry and whatever else shares the server
    /// must fit into PostgreSQL's default 100 connections; a service that
    /// meets "too many clients" while migrating exits).
    pub database_max_connections: u32,
    /// `DATABASE_API_CONNECTIONS` of every service (default 1, for the same
    /// reason).
    pub database_api_connections: u32,
    /// `RUST_LOG` of every service.
    pub rust_log: String,
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
            saga_timeout: "600s".into(),
            deadline_check_interval: "1s".into(),
            payment_max_amount: None,
            partitions: env::partitions_override(),
            database_max_connections: 4,
            database_api_connections: 1,
            rust_log: std::env::var("ORDERFLOW_E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(90),
            kafka_session_timeout_ms: Some(6000),
            own_broker: false,
            own_postgres: false,
            own_registry: false,
        }
    }
}

//! Settings every service shares. Each is a command-line flag and an
//! environment variable; the defaults run against the native stack of
//! `scripts/up`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What a service does with its database migrations when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Migrations {
    /// Apply the ones not applied yet (as `MIGRATION_DATABASE_URL`'s role
    /// when it is set, else as `DATABASE_URL`'s).
    Apply,
    /// Only check that every one is applied, and refuse to start if not:
    /// for a runtime role that may not change the schema, where a migration
    /// job (`--migrate-only`) applies them.
    Verify,
}

/// Settings that were renamed, old name first. A process that finds an old
/// name in its environment refuses to start and names the new one, instead
/// of silently running with the default.
pub const RENAMED_SETTINGS: &[(&str, &str)] = &[
    (
        "ORDER_CONSUMER_WORKERS_PER_TOPIC",
        "CONSUMER_WORKERS_PER_TOPIC",
    ),
    (
        "EMAILS_IN_FLIGHT_PER_PARTITION",
        "EMAILS_IN_FLIGHT_PER_WORKER",
    ),
];

/// Fails on the first of [`RENAMED_SETTINGS`] that `is_set` finds under its
/// old name.
pub fn reject_renamed_settings(is_set: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    match RENAMED_SETTINGS.iter().find(|(old, _)| is_set(old)) {
        Some((old, new)) => anyhow::bail!("{old} was renamed to {new}: set {new} instead"),
        None => Ok(()),
    }
}

/// Settings shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// PostgreSQL URL of this service's own database
    /// [default: postgres://postgres@127.0.0.1:5432/<service>_service].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL URL of the role that owns the schema, used for the
    /// migrations only; the service itself runs as `DATABASE_URL`'s role,
    /// which needs only to read and write rows
    /// (deploy/postgres/service-roles.sql) [default: `DATABASE_URL`].
    #[arg(long, env = "MIGRATION_DATABASE_URL")]
    pub migration_database_url: Option<String>,

    /// At start, `apply` the migrations or only `verify` that they are
    /// applied (a migration job applies them).
    #[arg(long, env = "DATABASE_MIGRATIONS", value_enum, default_value_t = Migrations::Apply)]
    pub migrations: Migrations,

    /// Most connections in the database pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,

    /// Most connections in a second pool, for HTTP requests and health
    /// checks only, so that consumers that are behind cannot make them
    /// wait; 0 lets them share the first pool.
    #[arg(long, env = "DATABASE_API_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub database_api_connections: u32,

    /// Consumer workers per consumed topic: the partitions of each topic
    /// share this many, and a worker's transactions take the records of
    /// all its partitions, each partition still in order; 0 gives every
    /// partition a worker of its own. Fewer workers make larger batches,
    /// so fewer transactions and no lock waits between them; the price is
    /// that a record waiting for a retry holds up the other partitions of
    /// its worker.
    #[arg(long, env = "CONSUMER_WORKERS_PER_TOPIC", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub consumer_workers_per_topic: u16,

    /// Most records a consumer worker applies in one transaction (of those
    /// already received; it never waits for more). Larger batches mean
    /// fewer commits under load; a failing record makes the batch's other
    /// records be applied again.
    #[arg(long, env = "CONSUMER_MAX_BATCH", default_value_t = 128,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub consumer_max_batch: u16,

    /// Event types the consumer dead-letters (reason `quarantined`) instead
    /// of handling, comma-separated (e.g. `PaymentProcessed`): while a
    /// handler is known to be wrong, its events wait in the dead-letter
    /// topic and the partition keeps flowing. After the fix, restart
    /// without it and send them back with `orderctl dlq redrive`.
    #[arg(long, env = "CONSUMER_QUARANTINE", value_delimiter = ',', value_parser = parse_event_type)]
    pub consumer_quarantine: Vec<orderflow_events::EventType>,

    /// Kafka bootstrap servers (any librdkafka property can be added as
    /// `KAFKA_PROP_<NAME>`, dots as underscores).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap_servers: String,

    /// Schema registry base URL.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub schema_registry_url: String,

    /// HTTP Basic credentials for the schema registry, `user:password`
    /// (Confluent's `basic.auth.user.info`); credentials in
    /// `SCHEMA_REGISTRY_URL` work too.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        hide_env_values = true
    )]
    pub schema_registry_user_info: Option<String>,

    /// Register schemas on first use instead of requiring them to be
    /// registered beforehand (`orderctl schemas register`).
    #[arg(long, env = "SCHEMA_AUTO_REGISTER", default_value_t = false, action = clap::ArgAction::Set)]
    pub schema_auto_register: bool,

    /// Address the HTTP server binds to.
    #[arg(long, env = "HTTP_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub http_host: IpAddr,

    /// HTTP port [default: the service's own, see the README].
    #[arg(long, env = "HTTP_PORT")]
    pub http_port: Option<u16>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Apply the database migrations, then exit (for a migration job that
    /// runs before a rollout).
    #[arg(long, default_value_t = false)]
    pub migrate_only: bool,

    /// Longest an HTTP request may take; past it the request is abandoned
    /// (its transaction rolls back) and the client gets 503 `timeout`.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub http_request_timeout: Duration,

    /// How often the inbox's old rows are deleted (`off`: never): a row
    /// older than its topic's retention plus `INBOX_RETENTION_MARGIN` can
    /// no longer meet a copy of its event (see `orderflow_events::inbox`).
    #[arg(long, env = "INBOX_PRUNE_INTERVAL", default_value = "1h", value_parser = parse_interval_or_off)]
    pub inbox_prune_interval: PruneInterval,

    /// How much longer than its topic's retention an inbox row is kept: the
    /// time a dead letter of the same event may reach its dead-letter topic
    /// after the row was written, and still be sent back.
    #[arg(long, env = "INBOX_RETENTION_MARGIN", default_value = "7d", value_parser = parse_duration)]
    pub inbox_retention_margin: Duration,

    /// Most HTTP requests handled at once; one more is answered at once
    /// with 503 `overloaded` and `Retry-After`, instead of queueing without
    /// bound.
    #[arg(long, env = "HTTP_MAX_CONCURRENT_REQUESTS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub http_max_concurrent_requests: u32,

    /// File with the Ed25519 public key (PEM) of the issuer of the bearer
    /// tokens every API call must carry (required to serve; `scripts/up`
    /// and the tests use the development key `deploy/dev-keys/jwt-dev.pub.pem`).
    #[arg(long, env = "AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<std::path::PathBuf>,

    /// The same key as PEM text (instead of a file), e.g. from a Secret.
    #[arg(long, env = "AUTH_PUBLIC_KEY", conflicts_with = "auth_public_key_file")]
    pub auth_public_key: Option<String>,

    /// The `iss` every token must name.
    #[arg(long, env = "AUTH_ISSUER", default_value = "orderflow")]
    pub auth_issuer: String,

    /// The `aud` every token must name.
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "orderflow")]
    pub auth_audience: String,

    /// Seconds to wait for in-flight work on shutdown before giving up.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl CommonConfig {
    /// The database URL, or the default for `service` (e.g. `order`).
    pub fn database_url_or_default(&self, service: &str) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("postgres://postgres@127.0.0.1:5432/{service}_service"))
    }

    /// The HTTP listen address, with `default_port` when none is set.
    pub fn http_addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.http_host, self.http_port.unwrap_or(default_port))
    }

    /// The token verifier from the `AUTH_*` settings; an error names what
    /// is missing or wrong.
    pub fn token_verifier(&self) -> anyhow::Result<crate::auth::Verifier> {
        use anyhow::Context as _;
        let pem = match (&self.auth_public_key, &self.auth_public_key_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path)
                .with_context(|| format!("reading AUTH_PUBLIC_KEY_FILE {}", path.display()))?,
            (None, None) => anyhow::bail!(
                "AUTH_PUBLIC_KEY_FILE (or AUTH_PUBLIC_KEY) is required: the Ed25519 public key \
                 of the issuer of the API's bearer tokens (for local runs: \
                 deploy/dev-keys/jwt-dev.pub.pem)"
            ),
        };
        crate::auth::Verifier::new(&pem, &self.auth_issuer, &self.auth_audience)
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Parses an event type name (`PaymentProcessed`).
pub fn parse_event_type(s: &str) -> Result<orderflow_events::EventType, String> {
    let s = s.trim();
    orderflow_events::EventType::from_name(s).ok_or_else(|| {
        let known: Vec<&str> = orderflow_events::EventType::ALL
            .iter()
            .map(|t| t.name())
            .collect();
        format!("`{s}` is not an event type (one of {})", known.join(", "))
    })
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h` or `1h 30m` (the
/// `humantime` format; a bare number is seconds), greater than zero, for
/// the services' and `orderctl`'s flags.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{s}` is too large for a number of seconds"))?
    } else {
        humantime::parse_duration(s).map_err(|e| {
            format!("`{s}` is not a duration like 500ms, 30s, 5m, 2h or 1h 30m: {e}")
        })?
    };
    if d.is_zero() {
        return Err("the duration must be greater than zero".to_owned());
    }
    Ok(d)
}

/// How often the inbox is pruned; `None`: never (`INBOX_PRUNE_INTERVAL=off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneInterval(pub Option<Duration>);

/// A duration as [`parse_duration`] takes it, or `off` for none.
pub fn parse_interval_or_off(s: &str) -> Result<PruneInterval, String> {
    match s.trim() {
        "off" => Ok(PruneInterval(None)),
        other => parse_duration(other)
            .map(|d| PruneInterval(Some(d)))
            .map_err(|e| format!("{e} (or `off`)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_is_pruned_hourly_unless_told_otherwise() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.inbox_prune_interval.0, Some(Duration::from_secs(3600)));
        assert_eq!(c.inbox_retention_margin, Duration::from_secs(7 * 86_400));
        let c = config(&["--inbox-prune-interval", "off"]).expect("off");
        assert_eq!(c.inbox_prune_interval.0, None);
        let c = config(&["--inbox-prune-interval", "10m"]).expect("10m");
        assert_eq!(c.inbox_prune_interval.0, Some(Duration::from_secs(600)));
        for bad in ["0", "never", ""] {
            let e = config(&["--inbox-prune-interval", bad]).expect_err(bad);
            assert!(e.to_string().contains("off"), "{bad}: {e}");
        }
        assert!(config(&["--inbox-retention-margin", "0s"]).is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        // humantime's units and combinations.
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "0s", "0", "ten", "5x", "-1s", "99999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn config(args: &[&str]) -> Result<CommonConfig, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: CommonConfig,
        }
        let argv = std::iter::once("svc").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.common)
    }

    #[test]
    fn renamed_settings_are_refused_by_their_old_name() {
        assert!(reject_renamed_settings(|_| false).is_ok());
        let err = reject_renamed_settings(|name| name == "EMAILS_IN_FLIGHT_PER_PARTITION")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("EMAILS_IN_FLIGHT_PER_PARTITION")
                && err.contains("EMAILS_IN_FLIGHT_PER_WORKER"),
            "{err}"
        );
        let err = reject_renamed_settings(|name| name == "ORDER_CONSUMER_WORKERS_PER_TOPIC")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("set CONSUMER_WORKERS_PER_TOPIC instead"),
            "{err}"
        );
    }

    #[test]
    fn http_connections_are_counted_apart() {
        let c = config(&["--database-api-connections", "0"]).unwrap();
        assert_eq!(c.database_api_connections, 0);
        for bad in ["-1", "lots", "1001"] {
            let arg = format!("--database-api-connections={bad}");
            let err = config(&[&arg]).unwrap_err();
            assert!(
                err.to_string().contains("--database-api-connections"),
                "{err}"
            );
        }
    }

    #[test]
    fn consumer_settings_have_defaults_and_bounds() {
        let c = config(&[]).unwrap();
        assert_eq!(c.consumer_workers_per_topic, 1);
        assert_eq!(c.consumer_max_batch, 128);
        let c = config(&["--consumer-workers-per-topic=0", "--consumer-max-batch=1"]).unwrap();
        assert_eq!(c.consumer_workers_per_topic, 0);
        assert_eq!(c.consumer_max_batch, 1);
        for (flag, bad) in [
            ("--consumer-workers-per-topic", "-1"),
            ("--consumer-workers-per-topic", "1025"),
            ("--consumer-workers-per-topic", "all"),
            ("--consumer-max-batch", "0"),
            ("--consumer-max-batch", "257"),
        ] {
            let err = config(&[&format!("{flag}={bad}")]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag}={bad}: {err}");
        }
    }
}

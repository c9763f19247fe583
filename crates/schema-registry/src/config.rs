//! Typed configuration, loaded from environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// Environment variable holding the PostgreSQL connection URL.
pub const DATABASE_URL_VAR: &str = "SCHEMA_REGISTRY_DATABASE_URL";
/// Environment variable holding the HTTP listen address (`host:port`).
pub const LISTEN_ADDR_VAR: &str = "SCHEMA_REGISTRY_LISTEN_ADDR";
/// Environment variable naming the users file ([`crate::auth`]); unset,
/// the registry asks nobody who they are.
pub const AUTH_FILE_VAR: &str = "SCHEMA_REGISTRY_AUTH_FILE";
/// Environment variable that lets the registry listen on an address other
/// than loopback without a users file (`true`): anyone who reaches it may
/// then register, delete and change compatibility levels.
pub const ANONYMOUS_VAR: &str = "SCHEMA_REGISTRY_ANONYMOUS";
/// Seconds a stopping registry gives open connections to finish their
/// requests before it exits anyway.
pub const SHUTDOWN_GRACE_VAR: &str = "SCHEMA_REGISTRY_SHUTDOWN_GRACE_SECS";
/// [`SHUTDOWN_GRACE_VAR`] when unset, as the services' `SHUTDOWN_GRACE_SECS`.
pub const DEFAULT_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Database URL used when [`DATABASE_URL_VAR`] is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/schema_registry";
/// Listen address used when [`LISTEN_ADDR_VAR`] is not set.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8081";

/// Everything the registry needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the registry keeps its schemas. The database is created on start
    /// if it does not exist yet.
    pub database: PgConnectOptions,
    /// Address the HTTP server binds to; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// The users file ([`crate::auth`]); `None`: no authentication.
    pub auth_file: Option<PathBuf>,
    /// Whether to serve without authentication on an address other than
    /// loopback (refused otherwise).
    pub anonymous: bool,
    /// After SIGTERM, how long open connections may take to finish their
    /// requests; then the registry exits with them still open (a client
    /// that never completes a request cannot keep it running).
    pub shutdown_grace: std::time::Duration,
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The database URL does not start with `postgres://` or `postgresql://`.
    #[error("{var} must start with postgres:// or postgresql://")]
    DatabaseScheme {
        /// The variable that held the value.
        var: &'static str,
    },
    /// The database URL is not a valid PostgreSQL URL.
    #[error("{var} is not a valid PostgreSQL URL: {source}")]
    DatabaseUrl {
        /// The variable that held the value.
        var: &'static str,
        /// Why it was rejected.
        #[source]
        source: sqlx::Error,
    },
    /// The listen address is not a `host:port` socket address.
    #[error("{var}={value:?} is not a socket address like 127.0.0.1:8081: {source}")]
    ListenAddr {
        /// The variable that held the value.
        var: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A flag that is neither `true` nor `false`.
    #[error("{var}={value:?} must be true or false")]
    Flag {
        /// The variable that held the value.
        var: &'static str,
        /// The rejected value.
        value: String,
    },
    /// Not a whole number of seconds.
    #[error("{var}={value:?} must be a whole number of seconds, e.g. 10")]
    Seconds {
        /// The variable that held the value.
        var: &'static str,
        /// The rejected value.
        value: String,
    },
    /// A variable set to an empty value.
    #[error("{var} is set but empty")]
    Empty {
        /// The variable.
        var: &'static str,
    },
}

impl Config {
    /// Reads the configuration from the process environment, using defaults
    /// for unset variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so callers (and tests) can
    /// supply values without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database_url =
            lookup(DATABASE_URL_VAR).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let listen_addr = lookup(LISTEN_ADDR_VAR).unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
        let mut config = Self::new(&database_url, &listen_addr)?;
        if let Some(path) = lookup(AUTH_FILE_VAR) {
            if path.trim().is_empty() {
                return Err(ConfigError::Empty { var: AUTH_FILE_VAR });
            }
            config.auth_file = Some(PathBuf::from(path.trim()));
        }
        if let Some(value) = lookup(ANONYMOUS_VAR) {
            config.anonymous = match value.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ConfigError::Flag {
                        var: ANONYMOUS_VAR,
                        value,
                    })
                }
            };
        }
        if let Some(value) = lookup(SHUTDOWN_GRACE_VAR) {
            let secs = value
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::Seconds {
                    var: SHUTDOWN_GRACE_VAR,
                    value: value.clone(),
                })?;
            config.shutdown_grace = std::time::Duration::from_secs(secs);
        }
        Ok(config)
    }

    /// Builds a configuration from raw values, validating both.
    pub fn new(database_url: &str, listen_addr: &str) -> Result<Self, ConfigError> {
        let database_url = database_url.trim();
        // sqlx ignores the scheme, so a MySQL URL would otherwise be accepted.
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::DatabaseScheme {
                var: DATABASE_URL_VAR,
            });
        }
        let database = PgConnectOptions::from_str(database_url).map_err(|source| {
            ConfigError::DatabaseUrl {
                var: DATABASE_URL_VAR,
                source,
            }
        })?;
        let listen_addr = listen_addr
            .trim()
            .parse()
            .map_err(|source| ConfigError::ListenAddr {
                var: LISTEN_ADDR_VAR,
                value: listen_addr.to_owned(),
                source,
            })?;
        Ok(Self {
            database,
            listen_addr,
            auth_file: None,
            anonymous: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let config = Config::from_lookup(|_| None).expect("defaults are valid");
        assert_eq!(config.listen_addr.port(), 8081);
        assert_eq!(config.database.get_database(), Some("schema_registry"));
        assert_eq!(config.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }

    #[test]
    fn invalid_values_are_rejected() {
        let bad_addr = Config::new(DEFAULT_DATABASE_URL, "localhost");
        assert!(matches!(bad_addr, Err(ConfigError::ListenAddr { .. })));
        let bad_url = Config::new("mysql://nope", DEFAULT_LISTEN_ADDR);
        assert!(matches!(bad_url, Err(ConfigError::DatabaseScheme { .. })));
        let bad_port = Config::new("postgres://u@host:notaport/db", DEFAULT_LISTEN_ADDR);
        assert!(matches!(bad_port, Err(ConfigError::DatabaseUrl { .. })));
    }

    #[test]
    fn auth_settings() {
        let config = Config::from_lookup(|_| None).expect("defaults");
        assert_eq!(config.auth_file, None);
        assert!(!config.anonymous);
        let config = Config::from_lookup(|v| match v {
            AUTH_FILE_VAR => Some("/etc/sr/users".into()),
            ANONYMOUS_VAR => Some("true".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(config.auth_file, Some(PathBuf::from("/etc/sr/users")));
        assert!(config.anonymous);
        let empty = Config::from_lookup(|v| (v == AUTH_FILE_VAR).then(|| " ".into()));
        assert!(matches!(empty, Err(ConfigError::Empty { .. })));
        let bad = Config::from_lookup(|v| (v == ANONYMOUS_VAR).then(|| "yes".into()));
        assert!(matches!(bad, Err(ConfigError::Flag { .. })));
    }

    #[test]
    fn shutdown_grace_is_whole_seconds() {
        let config = Config::from_lookup(|v| (v == SHUTDOWN_GRACE_VAR).then(|| " 3 ".into()))
            .expect("valid");
        assert_eq!(config.shutdown_grace, std::time::Duration::from_secs(3));
        for bad in ["", "-1", "1.5", "10s"] {
            let err = Config::from_lookup(|v| (v == SHUTDOWN_GRACE_VAR).then(|| bad.into()))
                .expect_err(bad);
            assert!(matches!(err, ConfigError::Seconds { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(SHUTDOWN_GRACE_VAR), "{err}");
        }
    }
}

//! A small Confluent-compatible Avro schema registry backed by PostgreSQL.
//!
//! It serves the REST paths, bodies and error codes of Confluent Schema
//! Registry that serialisers and CI need (register, lookup, fetch by id,
//! versions, compatibility checks, config, soft delete), for local runs and
//! tests where Confluent's JVM registry cannot be installed.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = orderflow_schema_registry::Config::from_env()?;
//! let app = orderflow_schema_registry::build(config).await?;
//! println!("listening on {}", app.local_addr());
//! app.run_until(std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod avro;
pub mod compatibility;
pub mod config;
pub mod db;
mod startup;

pub use api::{router, AppState};
pub use config::{Config, ConfigError};
pub use startup::{build, Application};

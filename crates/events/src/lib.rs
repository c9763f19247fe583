//! Shared event machinery for every orderflow service.
//!
//! This is the only crate in the workspace that talks to Kafka. It owns:
//! - the [`Envelope`] every event travels in and a Rust type for every saga
//!   event payload ([`Event`]);
//! - the Avro codec in Confluent wire format ([`codec`]) and a small schema
//!   registry client ([`registry`]);
//! - the transactional [`outbox`] and its [`relay`], which publishes with an
//!   idempotent producer;
//! - the [`consumer`] helper: decode, dispatch, inbox dedup, ordered offset
//!   storage, retries and a dead-letter topic;
//! - topic configuration and creation ([`topics`], [`admin`]) and W3C trace
//!   context in Kafka headers ([`trace_context`]), continued by OpenTelemetry
//!   producer and consumer spans when the process exports traces;
//! - the pipeline's Prometheus metrics ([`metrics`]).

pub mod access;
pub mod admin;
pub mod codec;
pub mod consumer;
pub mod dead_letters;
pub mod envelope;
pub mod error;
pub mod events;
pub mod inbox;
pub mod kafka;
pub mod metrics;
pub mod outbox;
pub mod reader;
pub mod registry;
pub mod relay;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topics;
pub mod trace_context;

pub use envelope::Envelope;
pub use events::{Event, EventType};
pub use topics::{Stream, TopicCatalog, TopicSpec};

/// Runs the migrations for the tables this crate needs in every service
/// database (`outbox`, `inbox`). Services call it next to their own
/// migrations; both share `_sqlx_migrations`, so versions this crate does not
/// know are ignored (and services must ignore this crate's versions too).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    migrator().run(pool).await
}

/// This crate's migrations (outbox, inbox and the rest of the machinery), as
/// [`migrate`] applies them beside a service's own.
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!();
    migrator.set_ignore_missing(true);
    migrator
}

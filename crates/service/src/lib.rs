//! The runtime every orderflow service shares.
//!
//! A service describes itself with a [`ServiceSpec`] (name, default port,
//! migrations, OpenAPI document) and a build function that turns a
//! [`Context`] (database pool, Kafka settings, codec, topics) into its
//! [`Parts`] (HTTP routes, one event consumer, background tasks). [`run`]
//! then does the rest the same way for every service:
//!
//! - logging (`RUST_LOG`, `LOG_FORMAT=text|json`) with the trace id on every
//!   line, and OpenTelemetry spans exported over OTLP/HTTP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`telemetry`]);
//! - connecting to PostgreSQL (waiting while it is unavailable) and running
//!   the shared outbox/inbox migrations plus the service's own, as the
//!   schema owner's role (`MIGRATION_DATABASE_URL`) when one is given, or
//!   only checking that a migration job applied them
//!   (`DATABASE_MIGRATIONS=verify`, [`migrations`]);
//! - the outbox relay, the consumer and the background tasks;
//! - `/health/live`, `/health/ready` (the database), `/health/detail`
//!   (database, broker, registry, consumer, outbox), `/metrics`
//!   (Prometheus/OpenMetrics: the event pipeline, HTTP requests and whatever
//!   the service registers in `orderflow_events::metrics`), `/openapi.json`
//!   and JSON errors for unknown routes and methods;
//! - graceful shutdown on SIGINT/SIGTERM: stop accepting requests, let
//!   in-flight handlers finish, commit consumer offsets, flush the relay
//!   and the span exporter.
//!
//! A task that fails ends the process with an error, so a supervisor
//! restarts it; nothing is lost because every effect is in the database
//! before its offset or outbox row moves on.

pub mod audit;
pub mod auth;
pub mod config;
mod database;
pub mod error;
pub mod extract;
pub mod health;
pub mod limits;
pub mod migrations;
pub mod openapi;
pub mod runtime;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{Principal, Role};
pub use config::CommonConfig;
pub use error::{ApiError, ErrorBody};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use openapi::ApiRouter;
pub use runtime::{run, Context, Parts, ServiceSpec};
/// `routes!(handler, …)`: the documented routes of annotated handlers, for
/// [`ApiRouter::routes`].
pub use utoipa_axum::routes;

//! The Confluent-compatible REST API: routes, state and shared lookups.

mod compatibility;
mod config;
pub mod error;
pub mod extract;
mod health;
mod schemas;
mod subjects;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use sqlx::{PgConnection, PgPool};

use self::error::ApiError;
use self::extract::{VersionSpec, BODY_LIMIT};
use crate::auth::{self, Users};
use crate::compatibility::{CompatibilityLevel, Existing, DEFAULT_LEVEL};
use crate::db::store::{self, SubjectVersion, GLOBAL_SUBJECT};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The registry's database.
    pub pool: PgPool,
    /// Who may do what ([`crate::auth`]); `None`: everyone everything.
    pub users: Option<Arc<Users>>,
}

/// All routes of the registry, independent of how they are served; behind
/// HTTP Basic authentication when `state.users` is set.
pub fn router(state: AppState) -> Router {
    let users = state.users.clone();
    let routes = Router::new()
        .route("/", get(health::root))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/schemas/types", get(schemas::types))
        .route("/schemas/ids/{id}", get(schemas::by_id))
        .route("/schemas/ids/{id}/schema", get(schemas::raw_by_id))
        .route("/schemas/ids/{id}/versions", get(schemas::versions_by_id))
        .route("/schemas/ids/{id}/subjects", get(schemas::subjects_by_id))
        .route("/subjects", get(subjects::list))
        .route(
            "/subjects/{subject}",
            post(subjects::lookup).delete(subjects::delete_subject),
        )
        .route(
            "/subjects/{subject}/versions",
            get(subjects::list_versions).post(subjects::register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(subjects::get_version).delete(subjects::delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(subjects::get_version_schema),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility::against_subject),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility::against_version),
        )
        .route(
            "/config",
            get(config::get_global)
                .put(config::put_global)
                .delete(config::delete_global),
        )
        .route(
            "/config/{subject}",
            get(config::get_subject)
                .put(config::put_subject)
                .delete(config::delete_subject),
        )
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    match users {
        Some(users) => routes.layer(axum::middleware::from_fn_with_state(users, auth::require)),
        None => routes,
    }
}

/// The level that applies to `subject`: its own, else the global one, else
/// [`DEFAULT_LEVEL`].
async fn effective_level(
    conn: &mut PgConnection,
    subject: &str,
) -> Result<CompatibilityLevel, ApiError> {
    let stored = match store::config(conn, subject).await? {
        Some(level) => Some(level),
        None => store::config(conn, GLOBAL_SUBJECT).await?,
    };
    stored.map_or(Ok(DEFAULT_LEVEL), |level| parse_stored_level(&level))
}

/// Parses a level read from the database (written validated, so a failure
/// means the data was tampered with).
fn parse_stored_level(level: &str) -> Result<CompatibilityLevel, ApiError> {
    level
        .parse()
        .map_err(|e| ApiError::Corrupt(format!("stored compatibility level: {e}")))
}

/// Parses stored versions for compatibility checks.
fn existing_schemas(versions: &[SubjectVersion]) -> Result<Vec<Existing>, ApiError> {
    versions
        .iter()
        .map(|v| {
            apache_avro::Schema::parse_str(&v.schema_text)
                .map(|schema| Existing {
                    version: v.version,
                    schema,
                })
                .map_err(|e| ApiError::Corrupt(format!("stored schema {}: {e}", v.schema_id)))
        })
        .collect()
}

/// Finds a version of `subject`, with Confluent's distinction between an
/// unknown subject (40401) and an unknown version (40402).
async fn resolve_version(
    conn: &mut PgConnection,
    subject: &str,
    spec: VersionSpec,
    include_deleted: bool,
) -> Result<SubjectVersion, ApiError> {
    let found = match spec {
        VersionSpec::Latest => store::latest(conn, subject).await?,
        VersionSpec::Number(n) => store::version(conn, subject, n)
            .await?
            .filter(|v| include_deleted || !v.deleted),
    };
    if let Some(version) = found {
        return Ok(version);
    }
    match spec {
        VersionSpec::Number(n) if store::subject_exists(conn, subject, include_deleted).await? => {
            Err(ApiError::VersionNotFound(n))
        }
        _ => Err(ApiError::SubjectNotFound(subject.to_owned())),
    }
}

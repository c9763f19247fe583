//! `/compatibility`: dry-run compatibility checks.

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Flags, JsonBody, PathParams, SchemaRequest, SrJson, VersionSpec};
use super::{effective_level, existing_schemas, resolve_version, AppState};
use crate::compatibility;
use crate::db::store;

/// `{"is_compatible"}`, plus `messages` with `?verbose=true`.
#[derive(Debug, Serialize)]
pub struct CompatibilityAnswer {
    is_compatible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<String>>,
}

impl CompatibilityAnswer {
    fn new(messages: Vec<String>, verbose: bool) -> SrJson<Self> {
        SrJson(Self {
            is_compatible: messages.is_empty(),
            messages: verbose.then_some(messages),
        })
    }
}

/// `POST /compatibility/subjects/{subject}/versions/{version}`: checks the
/// schema against one version, in the direction(s) of the subject's level.
pub async fn against_version(
    State(state): State<AppState>,
    PathParams((subject, version)): PathParams<(String, String)>,
    flags: Flags,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<SrJson<CompatibilityAnswer>, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let parsed = request.parse()?;
    let mut conn = state.pool.acquire().await?;
    let old = resolve_version(&mut conn, &subject, spec, false).await?;
    let level = effective_level(&mut conn, &subject).await?;
    let old = existing_schemas(std::slice::from_ref(&old))?;
    let messages = old
        .iter()
        .flat_map(|old| compatibility::check_one(level, &parsed.schema, old))
        .collect();
    Ok(CompatibilityAnswer::new(messages, flags.verbose))
}

/// `POST /compatibility/subjects/{subject}/versions`: the same check a
/// registration would make (latest version, or all for transitive levels).
/// A subject without versions accepts anything, as in Confluent.
pub async fn against_subject(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    flags: Flags,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<SrJson<CompatibilityAnswer>, ApiError> {
    let parsed = request.parse()?;
    let mut conn = state.pool.acquire().await?;
    let level = effective_level(&mut conn, &subject).await?;
    let live = store::versions(&mut conn, &subject, false).await?;
    let messages = compatibility::check(level, &parsed.schema, &existing_schemas(&live)?);
    Ok(CompatibilityAnswer::new(messages, flags.verbose))
}

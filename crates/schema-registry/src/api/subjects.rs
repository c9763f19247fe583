//! `/subjects`: registering, looking up, listing and deleting versions.

use axum::extract::State;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Flags, JsonBody, PathParams, RawJson, SchemaRequest, SrJson, VersionSpec};
use super::{effective_level, existing_schemas, resolve_version, AppState};
use crate::avro::AVRO;
use crate::compatibility;
use crate::db::store::{self, SubjectVersion};

/// A version as Confluent returns it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionBody {
    subject: String,
    id: i32,
    version: i32,
    /// Omitted for AVRO, as Confluent does.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_type: Option<String>,
    schema: String,
}

impl From<SubjectVersion> for VersionBody {
    fn from(v: SubjectVersion) -> Self {
        Self {
            subject: v.subject,
            id: v.schema_id,
            version: v.version,
            schema_type: (v.schema_type != AVRO).then_some(v.schema_type),
            schema: v.schema_text,
        }
    }
}

/// `POST /subjects/{subject}/versions`: registers a schema → `{"id"}`.
///
/// A schema already live under the subject returns its id without a new
/// version; otherwise it must pass the subject's compatibility level.
pub async fn register(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<SrJson<Value>, ApiError> {
    let parsed = request.parse()?;
    let mut tx = state.pool.begin().await?;
    store::lock_registry(&mut tx).await?;
    if let Some(existing) =
        store::find_by_fingerprint(&mut tx, &subject, &parsed.fingerprint, false).await?
    {
        return Ok(SrJson(json!({"id": existing.schema_id})));
    }
    let level = effective_level(&mut tx, &subject).await?;
    let live = store::versions(&mut tx, &subject, false).await?;
    let details = compatibility::check(level, &parsed.schema, &existing_schemas(&live)?);
    if !details.is_empty() {
        return Err(ApiError::Incompatible { subject, details });
    }
    let id = store::upsert_schema(&mut tx, &parsed.fingerprint, &parsed.text, AVRO).await?;
    let version = store::add_version(&mut tx, &subject, id).await?;
    tx.commit().await?;
    tracing::info!(%subject, id, version, "registered schema");
    Ok(SrJson(json!({"id": id})))
}

/// `POST /subjects/{subject}`: is this schema registered under the subject?
pub async fn lookup(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    flags: Flags,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<SrJson<VersionBody>, ApiError> {
    let parsed = request.parse()?;
    let mut conn = state.pool.acquire().await?;
    if !store::subject_exists(&mut conn, &subject, flags.deleted).await? {
        return Err(ApiError::SubjectNotFound(subject));
    }
    store::find_by_fingerprint(&mut conn, &subject, &parsed.fingerprint, flags.deleted)
        .await?
        .map(|v| SrJson(v.into()))
        .ok_or(ApiError::SchemaNotFound)
}

/// `GET /subjects`: subject names (`?deleted=true` includes soft-deleted).
pub async fn list(
    State(state): State<AppState>,
    flags: Flags,
) -> Result<SrJson<Vec<String>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(SrJson(store::subjects(&mut conn, flags.deleted).await?))
}

/// `GET /subjects/{subject}/versions`: version numbers, oldest first.
pub async fn list_versions(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    flags: Flags,
) -> Result<SrJson<Vec<i32>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let versions: Vec<i32> = store::versions(&mut conn, &subject, flags.deleted)
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    if versions.is_empty() {
        return Err(ApiError::SubjectNotFound(subject));
    }
    Ok(SrJson(versions))
}

/// `GET /subjects/{subject}/versions/{version}`.
pub async fn get_version(
    State(state): State<AppState>,
    PathParams((subject, version)): PathParams<(String, String)>,
    flags: Flags,
) -> Result<SrJson<VersionBody>, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let mut conn = state.pool.acquire().await?;
    let found = resolve_version(&mut conn, &subject, spec, flags.deleted).await?;
    Ok(SrJson(found.into()))
}

/// `GET /subjects/{subject}/versions/{version}/schema`: the schema itself.
pub async fn get_version_schema(
    State(state): State<AppState>,
    PathParams((subject, version)): PathParams<(String, String)>,
    flags: Flags,
) -> Result<RawJson, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let mut conn = state.pool.acquire().await?;
    let found = resolve_version(&mut conn, &subject, spec, flags.deleted).await?;
    Ok(RawJson(found.schema_text))
}

/// `DELETE /subjects/{subject}`: soft-deletes every version, or with
/// `?permanent=true` removes a soft-deleted subject; returns the versions.
pub async fn delete_subject(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    flags: Flags,
) -> Result<SrJson<Vec<i32>>, ApiError> {
    let mut tx = state.pool.begin().await?;
    store::lock_registry(&mut tx).await?;
    if !store::subject_exists(&mut tx, &subject, true).await? {
        return Err(ApiError::SubjectNotFound(subject));
    }
    let has_live = store::subject_exists(&mut tx, &subject, false).await?;
    let deleted = match (flags.permanent, has_live) {
        (false, true) => store::soft_delete_subject(&mut tx, &subject).await?,
        (false, false) => return Err(ApiError::SubjectSoftDeleted(subject)),
        (true, true) => return Err(ApiError::SubjectNotSoftDeleted(subject)),
        (true, false) => store::hard_delete_subject(&mut tx, &subject).await?,
    };
    tx.commit().await?;
    tracing::info!(%subject, permanent = flags.permanent, ?deleted, "deleted subject");
    Ok(SrJson(deleted))
}

/// `DELETE /subjects/{subject}/versions/{version}`: soft-deletes one
/// version, or with `?permanent=true` removes a soft-deleted one.
pub async fn delete_version(
    State(state): State<AppState>,
    PathParams((subject, version)): PathParams<(String, String)>,
    flags: Flags,
) -> Result<SrJson<i32>, ApiError> {
    let spec = VersionSpec::parse(&version)?;
    let mut tx = state.pool.begin().await?;
    store::lock_registry(&mut tx).await?;
    // Look among soft-deleted versions too, to answer 40406 rather than 40402.
    let found = resolve_version(&mut tx, &subject, spec, true).await?;
    match (flags.permanent, found.deleted) {
        (false, true) => return Err(ApiError::VersionSoftDeleted(subject, found.version)),
        (true, false) => return Err(ApiError::VersionNotSoftDeleted(subject, found.version)),
        _ => {}
    }
    store::delete_version(&mut tx, &subject, found.version, flags.permanent).await?;
    tx.commit().await?;
    tracing::info!(%subject, version = found.version, permanent = flags.permanent, "deleted version");
    Ok(SrJson(found.version))
}

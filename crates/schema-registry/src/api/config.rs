//! `/config`: global and per-subject compatibility levels.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Flags, JsonBody, PathParams, SrJson};
use super::{parse_stored_level, AppState};
use crate::compatibility::{CompatibilityLevel, DEFAULT_LEVEL};
use crate::db::store::{self, GLOBAL_SUBJECT};

/// `PUT /config` body. Confluent names the field `compatibility`; newer
/// clients may send `compatibilityLevel`.
#[derive(Debug, Deserialize)]
pub struct ConfigRequest {
    #[serde(alias = "compatibilityLevel")]
    compatibility: Option<String>,
}

/// `GET`/`DELETE` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelAnswer {
    compatibility_level: String,
}

/// `PUT` answer.
#[derive(Debug, Serialize)]
pub struct UpdateAnswer {
    compatibility: String,
}

fn level_answer(level: CompatibilityLevel) -> SrJson<LevelAnswer> {
    SrJson(LevelAnswer {
        compatibility_level: level.to_string(),
    })
}

fn requested_level(request: ConfigRequest) -> Result<CompatibilityLevel, ApiError> {
    request
        .compatibility
        .as_deref()
        .and_then(|level| level.parse().ok())
        .ok_or(ApiError::InvalidCompatibilityLevel)
}

async fn global_level(state: &AppState) -> Result<CompatibilityLevel, ApiError> {
    let mut conn = state.pool.acquire().await?;
    store::config(&mut conn, GLOBAL_SUBJECT)
        .await?
        .map_or(Ok(DEFAULT_LEVEL), |level| parse_stored_level(&level))
}

async fn set_level(
    state: &AppState,
    subject: &str,
    request: ConfigRequest,
) -> Result<SrJson<UpdateAnswer>, ApiError> {
    let level = requested_level(request)?;
    let mut conn = state.pool.acquire().await?;
    store::set_config(&mut conn, subject, level.as_str()).await?;
    tracing::info!(subject, %level, "set compatibility level");
    Ok(SrJson(UpdateAnswer {
        compatibility: level.to_string(),
    }))
}

/// `GET /config`: the global level (BACKWARD unless set).
pub async fn get_global(State(state): State<AppState>) -> Result<SrJson<LevelAnswer>, ApiError> {
    Ok(level_answer(global_level(&state).await?))
}

/// `PUT /config`.
pub async fn put_global(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ConfigRequest>,
) -> Result<SrJson<UpdateAnswer>, ApiError> {
    set_level(&state, GLOBAL_SUBJECT, request).await
}

/// `DELETE /config`: back to the default; returns the level it had.
pub async fn delete_global(State(state): State<AppState>) -> Result<SrJson<LevelAnswer>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let previous = store::delete_config(&mut conn, GLOBAL_SUBJECT).await?;
    let previous = previous.map_or(Ok(DEFAULT_LEVEL), |level| parse_stored_level(&level))?;
    Ok(level_answer(previous))
}

/// `GET /config/{subject}`: 40408 unless set, or the global level with
/// `?defaultToGlobal=true`.
pub async fn get_subject(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    flags: Flags,
) -> Result<SrJson<LevelAnswer>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match store::config(&mut conn, &subject).await? {
        Some(level) => Ok(level_answer(parse_stored_level(&level)?)),
        None if flags.default_to_global => Ok(level_answer(global_level(&state).await?)),
        None => Err(ApiError::SubjectConfigNotFound(subject)),
    }
}

/// `PUT /config/{subject}`.
pub async fn put_subject(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
    JsonBody(request): JsonBody<ConfigRequest>,
) -> Result<SrJson<UpdateAnswer>, ApiError> {
    set_level(&state, &subject, request).await
}

/// `DELETE /config/{subject}`: returns the removed level; 40401 if none.
pub async fn delete_subject(
    State(state): State<AppState>,
    PathParams(subject): PathParams<String>,
) -> Result<SrJson<LevelAnswer>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match store::delete_config(&mut conn, &subject).await? {
        Some(level) => Ok(level_answer(parse_stored_level(&level)?)),
        None => Err(ApiError::SubjectNotFound(subject)),
    }
}

//! `/schemas`: schemas by global id, and the supported types.

use axum::extract::State;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{PathParams, RawJson, SrJson};
use super::AppState;
use crate::avro::AVRO;
use crate::db::store::{self, StoredSchema};

/// `GET /schemas/ids/{id}` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaById {
    schema: String,
    /// Omitted for AVRO, as Confluent does.
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_type: Option<String>,
}

/// `GET /schemas/types`.
pub async fn types() -> SrJson<Value> {
    SrJson(json!([AVRO]))
}

/// `GET /schemas/ids/{id}`.
pub async fn by_id(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<SrJson<SchemaById>, ApiError> {
    let stored = find(&state, &id).await?;
    Ok(SrJson(SchemaById {
        schema_type: (stored.schema_type != AVRO).then_some(stored.schema_type),
        schema: stored.schema_text,
    }))
}

/// `GET /schemas/ids/{id}/schema`: the schema itself.
pub async fn raw_by_id(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<RawJson, ApiError> {
    Ok(RawJson(find(&state, &id).await?.schema_text))
}

/// `GET /schemas/ids/{id}/versions`: `[{"subject","version"}]` using it.
pub async fn versions_by_id(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<SrJson<Vec<Value>>, ApiError> {
    let stored = find(&state, &id).await?;
    let mut conn = state.pool.acquire().await?;
    let usages = store::usages(&mut conn, stored.id).await?;
    Ok(SrJson(
        usages
            .into_iter()
            .map(|(subject, version)| json!({"subject": subject, "version": version}))
            .collect(),
    ))
}

/// `GET /schemas/ids/{id}/subjects`: subjects using it.
pub async fn subjects_by_id(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<SrJson<Vec<String>>, ApiError> {
    let stored = find(&state, &id).await?;
    let mut conn = state.pool.acquire().await?;
    let mut subjects: Vec<String> = store::usages(&mut conn, stored.id)
        .await?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    Ok(SrJson(subjects))
}

async fn find(state: &AppState, id: &str) -> Result<StoredSchema, ApiError> {
    // Confluent's path parameter is an int; anything else is a plain 404.
    let id: i32 = id.parse().map_err(|_| ApiError::RouteNotFound)?;
    let mut conn = state.pool.acquire().await?;
    store::schema_by_id(&mut conn, id)
        .await?
        .ok_or(ApiError::SchemaIdNotFound(id))
}

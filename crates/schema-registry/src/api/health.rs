//! Root and health endpoints.

use axum::extract::State;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::SrJson;
use super::AppState;

/// `GET /`: Confluent answers an empty object.
pub async fn root() -> SrJson<Value> {
    SrJson(json!({}))
}

/// `GET /health/live`: the process is serving requests.
pub async fn live() -> SrJson<Value> {
    SrJson(json!({"status": "ok"}))
}

/// `GET /health/ready`: the database answers too.
pub async fn ready(State(state): State<AppState>) -> Result<SrJson<Value>, ApiError> {
    sqlx::query!("SELECT 1 AS one")
        .fetch_one(&state.pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::Unavailable
        })?;
    Ok(SrJson(json!({"status": "ok"})))
}

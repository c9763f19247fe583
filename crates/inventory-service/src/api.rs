//! HTTP API: `PUT /inventory/{sku}` and `GET /inventory/{sku}`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use orderflow_events::events::InventoryAdjusted;
use orderflow_events::{outbox, Envelope, TopicCatalog};
use orderflow_service::error::FieldProblem;
use orderflow_service::{ApiError, ApiJson, ApiPath};
use serde::Deserialize;
use sqlx::PgPool;

use crate::db::{self, StockLevel};
use crate::SOURCE;

/// Longest SKU accepted.
pub const MAX_SKU_LEN: usize = 64;
/// Largest stock level accepted.
pub const MAX_AVAILABLE: i64 = 1_000_000_000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// The inventory routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/inventory/{sku}", get(get_stock).put(put_stock))
        .with_state(state)
}

/// Body of `PUT /inventory/{sku}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetStock {
    /// Units available to reserve (absolute, not a delta).
    pub available: i64,
}

/// What is wrong with `sku`, if anything: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`.
pub fn sku_problem(sku: &str) -> Option<String> {
    if sku.is_empty() || sku.len() > MAX_SKU_LEN {
        return Some(format!("must be 1 to {MAX_SKU_LEN} characters long"));
    }
    if !sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may only contain letters, digits, '.', '_' and '-'".to_owned());
    }
    None
}

/// Every problem of a `PUT` request; empty when it is valid.
pub fn validate_put(sku: &str, body: &SetStock) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if let Some(p) = sku_problem(sku) {
        problems.push(FieldProblem::new("sku", p));
    }
    if !(0..=MAX_AVAILABLE).contains(&body.available) {
        problems.push(FieldProblem::new(
            "available",
            format!("must be between 0 and {MAX_AVAILABLE}"),
        ));
    }
    problems
}

use orderflow_service::telemetry::request_trace;

/// Sets the stock of a SKU and emits `InventoryAdjusted` in the same
/// transaction.
async fn put_stock(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<Json<StockLevel>, ApiError> {
    let problems = validate_put(&sku, &body);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let available = i32::try_from(body.available).map_err(ApiError::internal)?;
    let trace = request_trace(&headers);
    let mut tx = state.pool.begin().await?;
    let level = db::set_available(&mut tx, &sku, available).await?;
    let envelope = Envelope::new(
        SOURCE,
        uuid::Uuid::new_v4().to_string(),
        InventoryAdjusted {
            sku: level.sku.clone(),
            available: level.available,
            reserved: level.reserved,
        },
    );
    outbox::enqueue(&mut tx, &state.catalog, &sku, &envelope, Some(&trace))
        .await
        .map_err(ApiError::internal)?;
    tx.commit().await?;
    tracing::info!(sku = %level.sku, available = level.available, reserved = level.reserved, "stock set");
    Ok(Json(level))
}

/// The stock of a SKU.
async fn get_stock(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<StockLevel>, ApiError> {
    if let Some(p) = sku_problem(&sku) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("sku: {p}"),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    db::stock(&mut conn, &sku)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no stock is known for SKU {sku}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_follow_the_documented_alphabet() {
        for ok in ["SKU-1", "a.b_c-9", &"x".repeat(64)] {
            assert_eq!(sku_problem(ok), None, "{ok}");
        }
        for bad in ["", "with space", "slash/y", "ümlaut", &"x".repeat(65)] {
            assert!(sku_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn every_problem_of_a_put_is_listed() {
        let problems = validate_put("bad sku", &SetStock { available: -1 });
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["sku", "available"]);
        assert!(validate_put("SKU-1", &SetStock { available: 0 }).is_empty());
        assert!(validate_put(
            "SKU-1",
            &SetStock {
                available: MAX_AVAILABLE
            }
        )
        .is_empty());
        assert_eq!(
            validate_put(
                "SKU-1",
                &SetStock {
                    available: MAX_AVAILABLE + 1
                }
            )
            .len(),
            1
        );
    }

    #[test]
    fn unknown_body_fields_are_rejected() {
        let r: Result<SetStock, _> = serde_json::from_str(r#"{"available":1,"reserved":2}"#);
        assert!(r.is_err());
    }
}

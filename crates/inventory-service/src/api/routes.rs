//! The inventory route handlers.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use orderflow_events::events::InventoryAdjusted;
use orderflow_events::{outbox, Envelope};
use orderflow_service::audit::{self, Action};
use orderflow_service::error::FieldProblem;
use orderflow_service::{ApiError, ApiJson, ApiPath, Principal, Role};

use super::request::{
    sku_problem, validate_adjust, validate_put, AdjustStock, IfMatch, SetStock, MAX_AVAILABLE,
};
use super::AppState;
use crate::db::{self, StockLevel};
use crate::SOURCE;
use orderflow_service::telemetry::request_trace;

/// A stock level as a response: the level, with its `ETag`.
fn with_etag(level: StockLevel) -> impl IntoResponse {
    ([(header::ETAG, level.etag())], Json(level))
}

/// Sets the stock of a SKU and emits `InventoryAdjusted` in the same
/// transaction. With `If-Match`, only if the level is still the one the
/// client read (412 `precondition_failed` otherwise, changing nothing).
pub(super) async fn put_stock(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(sku): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Operator])?;
    let problems = validate_put(&sku, &body);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let if_match = IfMatch::from_headers(&headers)?;
    let available = i32::try_from(body.available).map_err(ApiError::internal)?;
    let mut tx = state.pool.begin().await?;
    if let Some(condition) = if_match {
        let current = db::stock_for_update(&mut tx, &sku).await?;
        if !condition.matches(current.as_ref()) {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("the stock of SKU {sku} is not the one If-Match names; read it again"),
            )
            .with_details(serde_json::json!({
                "etag": current.as_ref().map(StockLevel::etag),
                "current": current,
            })));
        }
    }
    let price = body.price.zip(body.currency.as_deref());
    let level = db::set_available(&mut tx, &sku, available, price).await?;
    let mut action = Action::new("stock.set", format!("sku:{sku}")).detail("available", available);
    if let Some((price, currency)) = price {
        action = action.detail("price", price).detail("currency", currency);
    }
    commit_adjusted(&state, tx, level, &headers, &principal, action).await
}

/// Adds a signed delta to the units available, in one statement, so it
/// cannot undo a reservation made meanwhile. 409 `insufficient_stock` when
/// a negative delta would take more than is available (reserved units are
/// not touched), 404 for a negative delta on an unknown SKU, 422 when the
/// result would pass the largest stock level.
pub(super) async fn adjust_stock(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(sku): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AdjustStock>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(&[Role::Operator])?;
    let problems = validate_adjust(&sku, &body);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let delta = i32::try_from(body.delta).map_err(ApiError::internal)?;
    let max = i32::try_from(MAX_AVAILABLE).map_err(ApiError::internal)?;
    let mut tx = state.pool.begin().await?;
    let Some(level) = db::adjust_available(&mut tx, &sku, delta, max).await? else {
        let current = db::stock(&mut tx, &sku).await?;
        return Err(match current {
            None => ApiError::not_found(format!("no stock is known for SKU {sku}")),
            Some(c) if delta < 0 => ApiError::conflict(
                "insufficient_stock",
                format!(
                    "SKU {sku} has {} units available; cannot take {}",
                    c.available, -body.delta
                ),
            )
            .with_details(serde_json::json!({ "current": c })),
            Some(c) => ApiError::validation(vec![FieldProblem::new(
                "delta",
                format!(
                    "would make {} units available; at most {MAX_AVAILABLE}",
                    i64::from(c.available) + body.delta
                ),
            )]),
        });
    };
    let action = Action::new("stock.adjusted", format!("sku:{sku}")).detail("delta", body.delta);
    commit_adjusted(&state, tx, level, &headers, &principal, action).await
}

/// Writes `InventoryAdjusted` for `level` and the audit record of `action`
/// by `actor` to the outbox in `tx`, commits, and answers with the level and
/// its `ETag`.
async fn commit_adjusted(
    state: &AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    level: StockLevel,
    headers: &HeaderMap,
    actor: &Principal,
    action: Action,
) -> Result<impl IntoResponse, ApiError> {
    let trace = request_trace(headers);
    let envelope = Envelope::new(
        SOURCE,
        uuid::Uuid::new_v4().to_string(),
        InventoryAdjusted {
            sku: level.sku.clone(),
            available: level.available,
            reserved: level.reserved,
            price: level.price,
            currency: level.currency.clone(),
        },
    );
    outbox::enqueue(&mut tx, &state.catalog, &level.sku, &envelope, Some(&trace))
        .await
        .map_err(ApiError::internal)?;
    let what = action.action;
    let action = action.produced(envelope.event_id);
    audit::record(&mut tx, &state.catalog, SOURCE, actor, action, Some(&trace)).await?;
    tx.commit().await?;
    tracing::info!(sku = %level.sku, available = level.available, reserved = level.reserved,
        actor = %actor.sub, "{what}");
    Ok(with_etag(level))
}

/// The stock of a SKU.
pub(super) async fn get_stock(
    State(state): State<AppState>,
    _caller: Principal,
    ApiPath(sku): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
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
        .map(with_etag)
        .ok_or_else(|| ApiError::not_found(format!("no stock is known for SKU {sku}")))
}

//! The inventory route handlers.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use orderflow_events::events::InventoryAdjusted;
use orderflow_events::{outbox, Envelope};
use orderflow_service::audit::{self, Action};
use orderflow_service::error::FieldProblem;
use orderflow_service::openapi::{
    DATABASE_UNAVAILABLE, FORBIDDEN, PAYLOAD_TOO_LARGE, UNAUTHORIZED,
};
use orderflow_service::{ApiError, ApiJson, ApiPath, ErrorBody, Principal, Role};

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
#[utoipa::path(
    put,
    path = "/inventory/{sku}",
    operation_id = "setStock",
    tag = "inventory",
    summary = "Set the units available of a SKU",
    description = "Creates the SKU if it is new. Sets `available` to the given value; `reserved` and `shipped` are untouched. Emits `InventoryAdjusted {sku, available, reserved, price, currency}` on the inventory topic with the SKU as key, a new correlation id and the trace context of the request's `traceparent` header (or a new trace). Nothing is written when the request is rejected. Reservations move units out of `available` at any moment, so an absolute `PUT` built from an earlier read can undo one: send `If-Match` with the `ETag` you read (412 when the level changed meanwhile, nothing written), or use `POST /inventory/{sku}/adjustments`.\n\nRoles: operator.",
    params(
        ("sku" = String, Path, description = "Stock keeping unit: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context continued by the emitted event."),
        ("If-Match" = Option<String>, Header, description = "`*` (the SKU must exist) or one or more entity tags from `ETag`; strong comparison, weak tags never match.")
    ),
    request_body(content = SetStock, content_type = "application/json", example = json!({"available": 50})),
    responses(
        (status = 200, description = "The stock after the change.", body = StockLevel, headers(("ETag" = String, description = "Entity tag of the stock level (`\"available.reserved.shipped\"`); send it back in `If-Match` for a conditional `PUT`."))),
        (status = 400, description = "`malformed_json`: the body is not JSON; `bad_request`: `If-Match` is empty or not text.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 412, description = "`precondition_failed`: `If-Match` names another level than the current one (or the SKU is unknown); `details` holds the current `etag` and level. Nothing is written.", body = ErrorBody),
        (status = 413, description = PAYLOAD_TOO_LARGE, body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`: wrong shape (missing `available`, unknown field, not an integer); `validation_failed`: the SKU is malformed and/or `available` is outside 0..=1000000000, each listed in `details`.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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
#[utoipa::path(
    post,
    path = "/inventory/{sku}/adjustments",
    operation_id = "adjustStock",
    tag = "inventory",
    summary = "Add to or take from the units available of a SKU",
    description = "Adds the signed `delta` to `available` in one statement, so it composes with reservations made at the same time. A positive delta creates an unknown SKU. Emits `InventoryAdjusted` as `PUT` does. Nothing is written when the request is rejected.\n\nRoles: operator.",
    params(
        ("sku" = String, Path, description = "Stock keeping unit: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context continued by the emitted event.")
    ),
    request_body(content = AdjustStock, content_type = "application/json", example = json!({"delta": 10})),
    responses(
        (status = 200, description = "The stock after the change.", body = StockLevel, headers(("ETag" = String, description = "Entity tag of the stock level (`\"available.reserved.shipped\"`); send it back in `If-Match` for a conditional `PUT`."))),
        (status = 400, description = "`malformed_json`: the body is not JSON.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: a negative delta for a SKU nobody stocked.", body = ErrorBody),
        (status = 409, description = "`insufficient_stock`: a negative delta larger than `available` (reserved units are never taken); `details.current` holds the level.", body = ErrorBody),
        (status = 413, description = PAYLOAD_TOO_LARGE, body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 422, description = "`invalid_body`: wrong shape (missing `delta`, unknown field, not an integer); `validation_failed`: the SKU is malformed, `delta` is 0 or outside ±1000000000, or the result would pass 1000000000 units.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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
#[utoipa::path(
    get,
    path = "/inventory/{sku}",
    operation_id = "getStock",
    tag = "inventory",
    summary = "The stock of a SKU",
    description = "Roles: any role.",
    params(
        ("sku" = String, Path, description = "Stock keeping unit: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")
    ),
    responses(
        (status = 200, description = "The stock.", body = StockLevel, headers(("ETag" = String, description = "Entity tag of the stock level (`\"available.reserved.shipped\"`); send it back in `If-Match` for a conditional `PUT`."))),
        (status = 400, description = "`invalid_path`: the SKU is malformed.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "`not_found`: the SKU has never been stocked.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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

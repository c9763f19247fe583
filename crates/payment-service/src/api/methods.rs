//! `POST /payment-methods`: a card token goes to the payment service, and
//! only the id that names it goes anywhere else (orders, events).
//! `GET /payment-methods/{id}` shows one (never its token) to its customer
//! or an operator.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::SecondsFormat;
use orderflow_service::audit::{self, Action};
use orderflow_service::error::FieldProblem;
use orderflow_service::openapi::{
    DATABASE_UNAVAILABLE, FORBIDDEN, PAYLOAD_TOO_LARGE, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE,
};
use orderflow_service::{ApiError, ApiJson, ApiPath, ErrorBody, Principal, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::db;
use crate::db::MethodRow;
use crate::domain::methods::{is_id, new_id, token_problem};
use crate::SOURCE;

/// Body of `POST /payment-methods`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NewPaymentMethod)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewMethod {
    /// The card token from the card form, e.g. `tok_visa` (approved),
    /// `tok_chargeDeclined` (declined): see the gateway table in the
    /// README. Stored by the payment service only, and never shown again.
    #[schema(min_length = 1, max_length = 100, pattern = "^[!-~]+$")]
    pub token: String,
    /// Whose card it is. A customer's token names it (the body may repeat
    /// it; another id is 403); a service token must name it here.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub customer_id: Option<String>,
}

/// A registered payment method; the token is never shown again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PaymentMethod)]
#[serde(rename_all = "camelCase")]
pub struct MethodView {
    /// What an order's `paymentMethodId` names.
    #[schema(pattern = "^pm_[0-9a-fA-F]{32}$")]
    pub payment_method_id: String,
    /// The customer it belongs to.
    pub customer_id: String,
    /// RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Longest customer id accepted (as in the order service).
const MAX_CUSTOMER_ID_LEN: usize = 100;

/// Registers a payment method: 201 with its id.
#[utoipa::path(
    post,
    path = "/payment-methods",
    operation_id = "createPaymentMethod",
    tag = "payment methods",
    summary = "Register a card",
    description = "Stores the card token and answers the id an order names (`paymentMethodId` in `POST /orders`). The token stays in the payment service's database: orders and events carry only the id. Each call registers a new method.\n\nRoles: customer (their own card: `customerId` is the token subject and may be omitted) or service (for the customer the body names).",
    request_body(content = NewMethod, content_type = "application/json", example = json!({"token": "tok_visa"})),
    responses(
        (status = 201, description = "Registered; `Location: /payment-methods/{id}`.", body = MethodView, headers(("Location" = String, description = "`/payment-methods/{id}`"))),
        (status = 400, description = "`malformed_json`: the body is not JSON.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = "`forbidden`: the token lacks the role this needs (`details.roles`), or a customer named another customer.", body = ErrorBody),
        (status = 413, description = PAYLOAD_TOO_LARGE, body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = ErrorBody),
        (status = 422, description = "`invalid_body`: JSON of the wrong shape (unknown or missing field, wrong type); `validation_failed`: `details` lists every invalid field (`token`, `customerId`).", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn register(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewMethod>,
) -> Result<Response, ApiError> {
    let customer_id = principal
        .customer_named(body.customer_id)?
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            ApiError::validation(vec![FieldProblem::new(
                "customerId",
                "is required when a service registers a method",
            )])
        })?;
    let mut problems = Vec::new();
    if let Some(p) = token_problem(&body.token) {
        problems.push(FieldProblem::new("token", p));
    }
    if customer_id.chars().count() > MAX_CUSTOMER_ID_LEN {
        problems.push(FieldProblem::new(
            "customerId",
            format!("must be at most {MAX_CUSTOMER_ID_LEN} characters"),
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let id = new_id();
    let mut tx = state.pool.begin().await?;
    let created = db::insert_method(&mut tx, &id, &customer_id, &body.token).await?;
    let action = Action::new("payment_method.registered", format!("payment-method:{id}"))
        .detail("customerId", &customer_id);
    audit::record(&mut tx, &state.catalog, SOURCE, &principal, action, None).await?;
    tx.commit().await?;
    tracing::info!(payment_method_id = %id, customer_id, actor = %principal.sub,
        "payment method registered");
    let view = MethodView::from(MethodRow {
        id: id.clone(),
        customer_id,
        created_at: created,
    });
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/payment-methods/{id}"))],
        Json(view),
    )
        .into_response())
}

impl From<MethodRow> for MethodView {
    fn from(m: MethodRow) -> Self {
        Self {
            payment_method_id: m.id,
            customer_id: m.customer_id,
            created_at: m.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// One payment method: its customer's or, for an operator, anyone's;
/// someone else's answers 404 as if it did not exist.
#[utoipa::path(
    get,
    path = "/payment-methods/{id}",
    operation_id = "getPaymentMethod",
    tag = "payment methods",
    summary = "One payment method",
    description = "The method without its token.\n\nRoles: customer (their own; another customer's answers 404), operator, service.",
    params(
        ("id" = String, Path, description = "`pm_` and 32 hex digits.")
    ),
    responses(
        (status = 200, description = "The payment method.", body = MethodView),
        (status = 400, description = "`invalid_path`: not a payment method id.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such payment method (or another customer's).", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn get_method(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MethodView>, ApiError> {
    principal.require(&[Role::Customer, Role::Operator, Role::Service])?;
    if !is_id(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("{id:?} is not a payment method id (pm_ and 32 hex digits)"),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    db::find_method(&mut conn, &id)
        .await?
        .filter(|m| principal.may_act_for(&m.customer_id))
        .map(|m| Json(m.into()))
        .ok_or_else(|| ApiError::not_found(format!("payment method {id} not found")))
}

//! HTTP API: `POST /payment-methods` (a customer registers a card token and
//! gets the `pm_…` id to order with) and `GET /payments/{orderId}`.

mod methods;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_events::TopicCatalog;
use orderflow_service::openapi::{DATABASE_UNAVAILABLE, FORBIDDEN, UNAUTHORIZED};
use orderflow_service::{routes, ApiError, ApiPath, ApiRouter, ErrorBody, Principal, Role};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::db::{self, Payment};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names, for the audit records the outbox publishes.
    pub catalog: TopicCatalog,
}

/// The document's title, description and tags; the operations come from
/// the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow payment service",
        description = "Payments of orders, made through a simulated, deterministic gateway when `InventoryReserved` arrives (`PaymentProcessed` / `PaymentFailed`), at most once per order and never after a cancellation was seen. `OrderCancelled` refunds a processed payment (`PaymentRefunded`) or, with no payment yet, leaves a `VOIDED` tombstone.\n\nGateway (payment token → outcome, decline code): `tok_visa`, `tok_mastercard`, `tok_amex` → approved; `tok_chargeDeclined` → `card_declined`; `tok_chargeDeclinedInsufficientFunds` → `insufficient_funds`; `tok_chargeDeclinedExpiredCard` → `expired_card`; any other token → `invalid_token`; any token with an amount over `PAYMENT_MAX_AMOUNT` (default 1000000 minor units) → `amount_too_large`.\n\nEvery error body is `{\"code\",\"message\",\"details\"?}`."
    ),
    tags(
        (name = "payments"),
        (name = "payment methods", description = "Cards registered by customers; orders name them by id."),
        (name = "health")
    )
)]
struct Doc;

/// The payment routes, documented.
pub fn router(state: AppState) -> ApiRouter {
    ApiRouter::new(Doc::openapi())
        .routes(routes!(get_payment))
        .routes(routes!(methods::register))
        .routes(routes!(methods::get_method))
        .with_state(state)
}

/// A payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Payment)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    /// Order id.
    #[schema(format = Uuid)]
    pub order_id: String,
    /// Payment id.
    #[schema(format = Uuid)]
    pub payment_id: String,
    /// `PROCESSED`: charged. `DECLINED`: the gateway refused. `REFUNDED`:
    /// charged, then refunded on cancellation. `VOIDED`: the order was
    /// cancelled before any charge; none will be made.
    #[schema(
        pattern = "^(PROCESSED|DECLINED|REFUNDED|VOIDED)$",
        example = "PROCESSED"
    )]
    pub status: String,
    /// Minor units; 0 when voided.
    pub amount: i64,
    /// ISO 4217; null when voided (nothing was ever charged).
    #[schema(example = "EUR")]
    pub currency: Option<String>,
    /// The gateway's decline code (`card_declined`, `insufficient_funds`,
    /// `expired_card`, `invalid_token`, `amount_too_large`,
    /// `invalid_amount`); present when declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub decline_code: Option<String>,
    /// Present when declined (the gateway's message), refunded or voided
    /// (`order cancelled: <reason>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime, example = "2025-01-31T12:00:00.123Z")]
    pub created_at: String,
    /// RFC 3339, UTC, milliseconds.
    #[schema(format = DateTime, example = "2025-01-31T12:00:00.123Z")]
    pub updated_at: String,
    /// RFC 3339, UTC, milliseconds; present when refunded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false, example = "2025-01-31T12:00:00.123Z")]
    pub refunded_at: Option<String>,
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        Self {
            order_id: p.order_id,
            payment_id: p.payment_id.to_string(),
            status: p.status,
            amount: p.amount,
            currency: p.currency,
            decline_code: p.decline_code,
            reason: p.reason,
            created_at: timestamp(p.created_at),
            updated_at: timestamp(p.updated_at),
            refunded_at: p.refunded_at.map(timestamp),
        }
    }
}

/// The order id of a path, normalised to the lowercase hyphenated form the
/// order service uses; 400 `invalid_path` when it is not a UUID.
pub fn parse_order_id(raw: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("orderId {raw:?} is not a UUID"),
            )
        })
}

/// The payment of an order.
#[utoipa::path(
    get,
    path = "/payments/{orderId}",
    operation_id = "getPayment",
    tag = "payments",
    summary = "The payment of an order",
    description = "Roles: operator.",
    params(
        ("orderId" = Uuid, Path, description = "The order id (a UUID).")
    ),
    responses(
        (status = 200, description = "The payment.", body = PaymentView),
        (status = 400, description = "`invalid_path`: the order id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no payment for this order (inventory not reserved yet, or reservation failed).", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
async fn get_payment(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<PaymentView>, ApiError> {
    principal.require(&[Role::Operator])?;
    let order_id = parse_order_id(&raw)?;
    let mut conn = state.pool.acquire().await?;
    db::payment(&mut conn, &order_id)
        .await?
        .map(|p| Json(p.into()))
        .ok_or_else(|| ApiError::not_found(format!("no payment for order {order_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn order_ids_must_be_uuids_and_are_normalised() {
        assert_eq!(
            parse_order_id("0190F3B2-1C4D-7A8E-9F00-0123456789AB").expect("uuid"),
            "0190f3b2-1c4d-7a8e-9f00-0123456789ab"
        );
        let e = parse_order_id("o-1").expect_err("not a uuid");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_path")
        );
    }

    #[test]
    fn the_view_is_camel_case_with_millisecond_timestamps() {
        let at = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .expect("time");
        let view = PaymentView::from(Payment {
            order_id: "o".into(),
            payment_id: Uuid::nil(),
            status: "DECLINED".into(),
            amount: 1999,
            currency: Some("EUR".into()),
            decline_code: Some("card_declined".into()),
            reason: Some("Your card was declined.".into()),
            created_at: at,
            updated_at: at,
            refunded_at: None,
        });
        let json = serde_json::to_value(view).expect("json");
        assert_eq!(json["declineCode"], "card_declined");
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20.123Z");
        assert!(json.get("refundedAt").is_none());
    }
}

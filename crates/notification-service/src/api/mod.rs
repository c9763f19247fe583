//! The HTTP API: `GET /notifications`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::SecondsFormat;
use orderflow_service::openapi::{DATABASE_UNAVAILABLE, FORBIDDEN, UNAUTHORIZED};
use orderflow_service::{routes, ApiError, ApiQuery, ApiRouter, ErrorBody, Principal, Role};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::db::{self, Notification};

/// Notifications listed when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: u32 = 500;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The service database.
    pub pool: PgPool,
}

/// The document's title, description and tags; the operations come from
/// the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow notification service",
        description = "E-mails customers over plain SMTP (no TLS yet): an `ORDER_CONFIRMATION` on `ShippingCreated` (unless the order's cancellation was seen first) and an `ORDER_CANCELLED` notice on `OrderCancelled`, at most one of each per order. Each outcome is recorded here and announced as `NotificationSent` or `NotificationFailed` (permanent SMTP rejection or invalid recipient). An e-mail that cannot be sent yet (server unreachable, timeout, 4xx) is retried and not listed until it is sent. Every error body is `{\"code\",\"message\",\"details\"?}`."
    ),
    tags((name = "notifications"), (name = "health"))
)]
struct Doc;

/// The notification routes, documented.
pub fn router(state: AppState) -> ApiRouter {
    ApiRouter::new(Doc::openapi())
        .routes(routes!(list))
        .with_state(state)
}

/// Query of `GET /notifications`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only this order's notifications, oldest first.
    #[param(nullable = false)]
    order_id: Option<Uuid>,
    /// At most this many (1..=500, default 100).
    #[param(minimum = 1, maximum = 500, nullable = false)]
    limit: Option<u32>,
}

/// One notification.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Notification)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    #[schema(format = Uuid)]
    notification_id: String,
    #[schema(format = Uuid)]
    order_id: String,
    /// `ORDER_CONFIRMATION` or `ORDER_CANCELLED`.
    #[schema(pattern = "^(ORDER_CONFIRMATION|ORDER_CANCELLED)$")]
    kind: String,
    /// The customer's e-mail address.
    recipient: String,
    subject: String,
    /// `SENT`: the SMTP server accepted the e-mail. `FAILED`: it can never
    /// be sent (permanent 5xx rejection or invalid address).
    #[schema(pattern = "^(SENT|FAILED)$")]
    status: String,
    /// Why it failed; only when `FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
    /// The deterministic Message-ID header,
    /// `<order-confirmation.<orderId>@orderflow>` or
    /// `<order-cancelled.<orderId>@orderflow>`.
    message_id: String,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            notification_id: n.id.to_string(),
            order_id: n.order_id,
            kind: n.kind,
            recipient: n.recipient,
            subject: n.subject,
            status: n.status,
            error: n.error,
            message_id: n.message_id,
            created_at: n.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// `GET /notifications` body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationList)]
pub struct ListResponse {
    notifications: Vec<NotificationView>,
}

/// Checks `limit`.
fn limit(q: &ListQuery) -> Result<i64, ApiError> {
    match q.limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(i64::from(n)),
        n => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// `GET /notifications?orderId=&limit=`: one order's notifications oldest
/// first, or without `orderId` the latest ones newest first.
#[utoipa::path(
    get,
    path = "/notifications",
    operation_id = "listNotifications",
    tag = "notifications",
    summary = "Notifications of one order, or the latest ones",
    description = "With `orderId`: that order's notifications, oldest first. Without: the latest notifications of all orders, newest first. Unknown query parameters are rejected.\n\nRoles: operator.",
    params(ListQuery),
    responses(
        (status = 200, description = "The notifications.", body = ListResponse),
        (status = 400, description = "`invalid_query`: `orderId` is not a UUID, `limit` is outside 1..500 or not a number, or an unknown parameter was given.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListResponse>, ApiError> {
    principal.require(&[Role::Operator])?;
    let limit = limit(&q)?;
    let mut conn = state.pool.acquire().await?;
    let rows = match q.order_id {
        Some(order_id) => db::for_order(&mut conn, &order_id.to_string(), limit).await?,
        None => db::latest(&mut conn, limit).await?,
    };
    Ok(Json(ListResponse {
        notifications: rows.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<u32>) -> ListQuery {
        ListQuery {
            order_id: None,
            limit,
        }
    }

    #[test]
    fn limit_defaults_to_100_and_stays_within_1_to_500() {
        assert_eq!(limit(&q(None)).expect("default"), 100);
        assert_eq!(limit(&q(Some(1))).expect("1"), 1);
        assert_eq!(limit(&q(Some(500))).expect("500"), 500);
        assert_eq!(limit(&q(Some(0))).expect_err("0").code, "invalid_query");
        assert_eq!(limit(&q(Some(501))).expect_err("501").code, "invalid_query");
    }

    #[test]
    fn error_is_omitted_when_absent() {
        let n = Notification {
            id: Uuid::nil(),
            order_id: "o".into(),
            kind: "ORDER_CONFIRMATION".into(),
            recipient: "ann@example.com".into(),
            subject: "s".into(),
            status: "SENT".into(),
            error: None,
            message_id: "<m@orderflow>".into(),
            created_at: chrono::DateTime::UNIX_EPOCH,
        };
        let json = serde_json::to_value(NotificationView::from(n)).expect("json");
        assert_eq!(json["notificationId"], Uuid::nil().to_string());
        assert_eq!(json["messageId"], "<m@orderflow>");
        assert_eq!(json["createdAt"], "1970-01-01T00:00:00.000Z");
        assert!(json.get("error").is_none());
    }
}

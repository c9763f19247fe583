//! The HTTP API: `GET /notifications`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use orderflow_service::{ApiError, ApiQuery, Principal, Role};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
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

/// The notification routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/notifications", get(list))
        .with_state(state)
}

/// Query of `GET /notifications`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only this order's notifications, oldest first.
    order_id: Option<Uuid>,
    /// At most this many (1..=500, default 100).
    limit: Option<u32>,
}

/// One notification in the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    notification_id: String,
    order_id: String,
    kind: String,
    recipient: String,
    subject: String,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    message_id: String,
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
#[derive(Debug, Serialize)]
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

//! The HTTP API: create, read, list and cancel orders, the timeline, and the
//! SKU catalogue. Creating an order (`create`), listing (`list`) and the
//! JSON views (`view`) have modules of their own.

mod create;
mod list;
pub mod request;
pub mod view;

use create::create_order;
use list::list_orders;
pub use view::AcceptedJson;
use view::{rfc3339, JournalJson, OrderJson, OrderPageJson, TimelineEventJson, TimelineJson};

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use orderflow_events::events::{Address, OrderLine};
use orderflow_events::{Envelope, TopicCatalog};
use orderflow_service::audit::{self, Action};
use orderflow_service::{ApiError, ApiJson, ApiPath, ApiQuery, Principal, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::api::request::{request_hash, validate, CreateOrderRequest};
use crate::db::writer::OrderWriter;
use crate::db::{self, Cause, Clock, ListFilter, OrderRow};
use crate::domain::acceptance;
use crate::domain::pricing;
use crate::domain::saga::{self, CancelDecision, ReasonCode, Status};
use crate::domain::timeline;
use crate::SOURCE;

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
/// Longest accepted `X-User-Id` / `X-Session-Id`.
pub const MAX_METADATA_LEN: usize = 200;
/// Default page size of `GET /orders`.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page size of `GET /orders`.
pub const MAX_LIMIT: i64 = 100;
/// Reason of a customer cancellation.
pub const CUSTOMER_CANCEL_REASON: &str = "cancelled by the customer";

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names for the outbox.
    pub topics: TopicCatalog,
    /// Saga timeout.
    pub timeout: TimeDelta,
    /// Writes new orders, committing concurrent ones together.
    pub writer: OrderWriter,
}

/// The order service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/timeline", get(get_timeline))
        .route("/orders/{id}/journal", get(get_journal))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/catalog/{sku}", get(get_catalog))
        .with_state(state)
}

pub use orderflow_service::telemetry::request_trace;

/// 404 unless `principal` may see `order` (a customer sees only their
/// own: someone else's order is as if it did not exist).
fn visible(principal: &Principal, order: OrderRow) -> Result<OrderRow, ApiError> {
    if principal.may_act_for(&order.customer_id) {
        Ok(order)
    } else {
        Err(ApiError::not_found(format!("order {} not found", order.id)))
    }
}

/// Order `id` on `conn` if `principal` may see it, else 404.
async fn visible_order(
    conn: &mut sqlx::PgConnection,
    principal: &Principal,
    id: Uuid,
) -> Result<OrderRow, ApiError> {
    let Some(order) = db::fetch_order(conn, id, false).await? else {
        return Err(ApiError::not_found(format!("order {id} not found")));
    };
    visible(principal, order)
}

async fn load(state: &AppState, id: Uuid) -> Result<OrderRow, ApiError> {
    let mut conn = state.pool.acquire().await?;
    db::fetch_order(&mut conn, id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("order {id} not found")))
}

async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrderJson>, ApiError> {
    let order = visible(&principal, load(&state, id).await?)?;
    Ok(Json(OrderJson::from(&order)))
}

async fn get_timeline(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TimelineJson>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    visible_order(&mut conn, &principal, id).await?;
    let entries = timeline::causal_order(db::timeline(&mut conn, id).await?);
    let events: Vec<TimelineEventJson> = entries
        .into_iter()
        .map(|e| TimelineEventJson {
            event_id: e.event_id,
            event_type: e.event_type,
            source: e.source,
            correlation_id: e.correlation_id,
            causation_id: e.causation_id,
            timestamp: rfc3339(&e.occurred_at),
        })
        .collect();
    Ok(Json(TimelineJson {
        order_id: id,
        events,
    }))
}

/// The order's events as the log holds them (the journal projection),
/// oldest first.
async fn get_journal(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JournalJson>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    visible_order(&mut conn, &principal, id).await?;
    let rows = db::journal::of_correlation(&mut conn, &id.to_string()).await?;
    Ok(Json(JournalJson {
        order_id: id,
        events: rows.into_iter().map(Into::into).collect(),
    }))
}

async fn cancel_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Customer, Role::Operator])?;
    let trace = request_trace(&headers);
    let mut tx = state.pool.begin().await?;
    let Some(order) = db::fetch_order(&mut tx, id, true).await? else {
        return Err(ApiError::not_found(format!("order {id} not found")));
    };
    let mut order = visible(&principal, order)?;
    match saga::customer_cancel(order.status, &order.facts()) {
        CancelDecision::AlreadyCancelled => {
            Ok((StatusCode::OK, Json(OrderJson::from(&order))).into_response())
        }
        CancelDecision::AlreadyRequested => {
            Ok((StatusCode::ACCEPTED, Json(OrderJson::from(&order))).into_response())
        }
        CancelDecision::AlreadyDispatched => Err(ApiError::conflict(
            "already_dispatched",
            format!("order {id} can no longer be cancelled: its shipment was dispatched"),
        )
        .with_details(json!({"status": order.status.as_str()}))),
        CancelDecision::NotCancellable => Err(ApiError::conflict(
            "not_cancellable",
            format!(
                "order {id} can no longer be cancelled: it is {}",
                order.status
            ),
        )
        .with_details(json!({"status": order.status.as_str()}))),
        CancelDecision::Request => {
            let previous = order.status;
            let t = db::cancel_request(&order, ReasonCode::CustomerRequest);
            let clock = Clock {
                now: Utc::now(),
                timeout: state.timeout,
            };
            let emitted = db::apply_transition(
                &mut tx,
                &state.topics,
                &mut order,
                &t,
                CUSTOMER_CANCEL_REASON,
                &Cause::Local {
                    trace: trace.clone(),
                },
                &clock,
            )
            .await?;
            let action = emitted.into_iter().fold(
                Action::new("order.cancellation_requested", format!("order:{id}"))
                    .on_order(id.to_string(), id.to_string())
                    .detail("previousStatus", previous),
                Action::produced,
            );
            audit::record(
                &mut tx,
                &state.topics,
                SOURCE,
                &principal,
                action,
                Some(&trace),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(order_id = %id, previous_status = %previous, actor = %principal.sub,
                "cancellation requested");
            Ok((StatusCode::ACCEPTED, Json(OrderJson::from(&order))).into_response())
        }
    }
}

async fn get_catalog(
    State(state): State<AppState>,
    _caller: Principal,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match db::catalog_entry(&mut conn, &sku).await? {
        Some(e) => {
            let mut body = json!({"sku": sku, "available": e.available});
            if let (Some(price), Some(currency)) = (e.price, e.currency) {
                body["price"] = json!(price);
                body["currency"] = json!(currency);
            }
            Ok(Json(body))
        }
        None => Err(ApiError::not_found(format!("SKU {sku:?} is not known"))),
    }
}

//! The HTTP API: create, read, list and cancel orders, the timeline, and the
//! SKU catalogue. Creating an order (`create`), listing (`list`) and the
//! JSON views (`view`) have modules of their own.

mod create;
mod list;
pub mod request;
pub mod view;

pub use view::AcceptedJson;
use view::{
    rfc3339, CatalogJson, JournalJson, OrderJson, OrderPageJson, TimelineEventJson, TimelineJson,
};

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use orderflow_events::events::{Address, OrderLine};
use orderflow_events::{Envelope, TopicCatalog};
use orderflow_service::audit::{self, Action};
use orderflow_service::openapi::{
    DATABASE_UNAVAILABLE, FORBIDDEN, INTERNAL, PAYLOAD_TOO_LARGE, UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
};
use orderflow_service::{
    routes, ApiError, ApiJson, ApiPath, ApiQuery, ApiRouter, ErrorBody, Principal, Role,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use utoipa::{OpenApi, ToSchema};
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
    /// The catalogue prices this process last read.
    pub prices: Arc<db::PriceCache>,
}

/// The document's title, description and tags; the operations come from
/// the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow order service",
        description = "Accepts orders and owns the order saga. `POST /orders` stores the order as `PENDING` and writes `OrderCreated` to the outbox in the same transaction. The service then follows the other services' events (inventory, payment, shipping, notification) and advances the status as far as the facts allow: `PENDING → INVENTORY_RESERVED → PAID (OrderConfirmed) → SHIPPING_CREATED → SHIPPED (OrderShipped, after the confirmation e-mail) → DELIVERED (OrderDelivered)`. Before `SHIPPED` an order ends `CANCELLED` (`OrderCancelled`) at once on a reservation failure (`OUT_OF_STOCK`) or a payment failure (`PAYMENT_DECLINED`). A customer cancellation (`CUSTOMER_REQUEST`) or a saga that made no progress before payment for `ORDER_SAGA_TIMEOUT` (`SAGA_TIMEOUT`) could race the warehouse's dispatch, so it is a request (`CANCELLING`, `OrderCancellationRequested`) that the shipping service, the one authority on dispatch, answers: `ShippingCancelled` ends the order `CANCELLED`, `ShippingCancellationRejected` (the parcel left first) resumes it where it was. A paid order is never cancelled by the deadline: it is marked stalled (`stalledSince`). SKUs are learnt from `InventoryAdjusted`. Every error body is `{\"code\",\"message\",\"details\"?}`; timestamps are RFC 3339 UTC with milliseconds; money is an integer in minor units."
    ),
    tags((name = "orders"), (name = "catalog"), (name = "health"))
)]
struct Doc;

/// The order service's routes, documented.
pub fn router(state: AppState) -> ApiRouter {
    ApiRouter::new(Doc::openapi())
        .routes(routes!(create::create_order, list::list_orders))
        .routes(routes!(get_order))
        .routes(routes!(get_timeline))
        .routes(routes!(get_journal))
        .routes(routes!(cancel_order))
        .routes(routes!(get_catalog))
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

#[utoipa::path(
    get,
    path = "/orders/{id}",
    operation_id = "getOrder",
    tag = "orders",
    summary = "An order",
    description = "Roles: the order's customer (anyone else's order answers 404), operator or service.",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID).")
    ),
    responses(
        (status = 200, description = "The order.", body = OrderJson),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<OrderJson>, ApiError> {
    let order = visible(&principal, load(&state, id).await?)?;
    Ok(Json(OrderJson::from(&order)))
}

#[utoipa::path(
    get,
    path = "/orders/{id}/timeline",
    operation_id = "getTimeline",
    tag = "orders",
    summary = "Every event of an order, in causal order",
    description = "Every event of the order the service emitted or consumed: causes before effects, otherwise by timestamp, then by arrival.\n\nRoles: the order's customer (anyone else's order answers 404), operator or service.",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID).")
    ),
    responses(
        (status = 200, description = "The timeline.", body = TimelineJson),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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
#[utoipa::path(
    get,
    path = "/orders/{id}/journal",
    operation_id = "getJournal",
    tag = "orders",
    summary = "Every event of an order on the log, with where it is",
    description = "The order's events as the saga's five topics hold them, from the order journal: a projection the order service keeps in its own consumer group (`order-service.journal`) and `orderctl replay --projection order-journal` rebuilds from the log. Oldest first. It follows the log, so an event appears here a moment after it is published.\n\nRoles: the order's customer (anyone else's order answers 404), operator or service.",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID).")
    ),
    responses(
        (status = 200, description = "The journal.", body = JournalJson),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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

#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    operation_id = "cancelOrder",
    tag = "orders",
    summary = "Cancel an order (customer request)",
    description = "Allowed before `SHIPPED` while the shipment is not known to be dispatched. The order becomes `CANCELLING` (`reasonCode` `CUSTOMER_REQUEST`) and `OrderCancellationRequested` asks the shipping service to stop the shipment. Shipping decides under the same row lock as a dispatch, so exactly one of the two wins: with `ShippingCancelled` the order ends `CANCELLED` and `OrderCancelled` releases the reservation and refunds (or voids) the payment; with `ShippingCancellationRejected` the parcel had left, nothing is refunded and the order goes on (a later call answers 409 `already_dispatched`). Poll `GET /orders/{id}` for the outcome. No body is needed (any body is ignored).\n\nRoles: the order's customer (anyone else's order answers 404) or operator.",
    params(
        ("id" = Uuid, Path, description = "Order id (UUID)."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context; the emitted events continue this trace (a new trace when absent or invalid)."),
        ("tracestate" = Option<String>, Header, description = "W3C vendor trace state, passed through.")
    ),
    responses(
        (status = 200, description = "Already cancelled (for whatever reason); nothing is emitted.", body = OrderJson),
        (status = 202, description = "Requested (or requested before and not yet answered): the order, `CANCELLING`.", body = OrderJson),
        (status = 400, description = "`invalid_path`: the id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such order.", body = ErrorBody),
        (status = 409, description = "`already_dispatched`: the order's shipment was dispatched (the cancellation lost the race, or came late); `not_cancellable`: the order is `SHIPPED` or `DELIVERED`. `details.status` is the order's status.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
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

#[utoipa::path(
    get,
    path = "/catalog/{sku}",
    operation_id = "getCatalogEntry",
    tag = "catalog",
    summary = "Whether a SKU is known",
    description = "SKUs are learnt from `InventoryAdjusted`; `available` is the value of the last adjustment.\n\nRoles: any role.",
    params(
        ("sku" = String, Path, description = "")
    ),
    responses(
        (status = 200, description = "The SKU is known.", body = CatalogJson),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "`not_found`: no `InventoryAdjusted` was seen for this SKU.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
async fn get_catalog(
    State(state): State<AppState>,
    _caller: Principal,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<CatalogJson>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    match db::catalog_entry(&mut conn, &sku).await? {
        Some(e) => {
            let (price, currency) = match (e.price, e.currency) {
                (Some(p), Some(c)) => (Some(p), Some(c)),
                _ => (None, None),
            };
            Ok(Json(CatalogJson {
                sku,
                available: e.available,
                price,
                currency,
            }))
        }
        None => Err(ApiError::not_found(format!("SKU {sku:?} is not known"))),
    }
}

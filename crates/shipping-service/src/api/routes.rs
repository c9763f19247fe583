//! Route handlers.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SubsecRound, Utc};
use orderflow_events::error::OutboxError;
use orderflow_events::events::{Event, ShippingDelivered, ShippingDispatched};
use orderflow_events::{outbox, Envelope};
use orderflow_service::audit::{self, Action};
use orderflow_service::openapi::{DATABASE_UNAVAILABLE, FORBIDDEN, TRACEPARENT, UNAUTHORIZED};
use orderflow_service::{ApiError, ApiPath, ErrorBody, Principal, Role};
use uuid::Uuid;

use super::view::ShipmentView;
use super::AppState;
use crate::db::{self, DbError, Shipment};
use crate::domain::{self, Decision, Transition};
use crate::SOURCE;

fn db_error(e: DbError) -> ApiError {
    match e {
        DbError::Sqlx(e) => e.into(),
        DbError::Corrupt(c) => ApiError::internal(c),
    }
}

fn outbox_error(e: OutboxError) -> ApiError {
    match e {
        OutboxError::Database(e) => e.into(),
        OutboxError::Codec(c) => ApiError::internal(c),
    }
}

fn not_found(order_id: &str) -> ApiError {
    ApiError::not_found(format!("no shipment for order {order_id}"))
}

/// The shipment of `order_id` (tombstones count as none).
async fn load(state: &AppState, order_id: &str) -> Result<Shipment, ApiError> {
    let mut conn = state.pool.acquire().await?;
    db::get(&mut conn, order_id)
        .await
        .map_err(db_error)?
        .and_then(db::Record::into_shipment)
        .ok_or_else(|| not_found(order_id))
}

/// `GET /shipments/{orderId}`.
#[utoipa::path(
    get,
    path = "/shipments/{orderId}",
    operation_id = "getShipment",
    tag = "shipments",
    summary = "The shipment of an order",
    description = "Roles: operator.",
    params(
        ("orderId" = Uuid, Path, description = "The order id (a UUID).")
    ),
    responses(
        (status = 200, description = "The shipment.", body = ShipmentView),
        (status = 400, description = "`invalid_path`: the order id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no shipment for this order (none created yet, or the order was cancelled before one was).", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_shipment(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<ShipmentView>, ApiError> {
    principal.require(&[Role::Operator])?;
    let shipment = load(&state, &order_id.to_string()).await?;
    Ok(Json(shipment.into()))
}

/// `GET /shipments/{orderId}/label`: the label as plain text.
#[utoipa::path(
    get,
    path = "/shipments/{orderId}/label",
    operation_id = "getLabel",
    tag = "shipments",
    summary = "The shipping label as plain text",
    description = "Carrier, tracking number, order and shipment id, status, recipient address and contents.\n\nRoles: operator.",
    params(
        ("orderId" = Uuid, Path, description = "The order id (a UUID).")
    ),
    responses(
        (status = 200, description = "The label.", body = String, content_type = "text/plain"),
        (status = 400, description = "`invalid_path`: the order id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no shipment for this order.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub async fn get_label(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Operator])?;
    let s = load(&state, &order_id.to_string()).await?;
    let shipment_id = s.shipment_id.to_string();
    let text = domain::render_label(&domain::Label {
        carrier: &s.carrier,
        tracking_number: &s.tracking_number,
        order_id: &s.order_id,
        shipment_id: &shipment_id,
        status: s.status,
        recipient: &s.recipient,
        items: &s.items,
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `POST /shipments/{orderId}/dispatch`.
#[utoipa::path(
    post,
    path = "/shipments/{orderId}/dispatch",
    operation_id = "dispatchShipment",
    tag = "shipments",
    summary = "Hand the shipment to the carrier (CREATED → DISPATCHED)",
    description = "Emits `ShippingDispatched` (cause: the last event applied or emitted for the order). Concurrent calls are serialised by a row lock; only the first emits. No request body.\n\nRoles: operator.",
    params(
        ("orderId" = Uuid, Path, description = "The order id (a UUID)."),
        ("traceparent" = Option<String>, Header, description = TRACEPARENT)
    ),
    responses(
        (status = 200, description = "The shipment, now (or already) DISPATCHED.", body = ShipmentView),
        (status = 400, description = "`invalid_path`: the order id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no shipment for this order.", body = ErrorBody),
        (status = 409, description = "`shipment_cancelled`: the shipment was cancelled; `invalid_transition`: it was delivered already.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub async fn dispatch(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(order_id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Json<ShipmentView>, ApiError> {
    principal.require(&[Role::Operator])?;
    transition(&state, &principal, order_id, Transition::Dispatch, &headers).await
}

/// `POST /shipments/{orderId}/deliver`.
#[utoipa::path(
    post,
    path = "/shipments/{orderId}/deliver",
    operation_id = "deliverShipment",
    tag = "shipments",
    summary = "Record delivery (DISPATCHED → DELIVERED)",
    description = "Emits `ShippingDelivered`. Concurrent calls are serialised by a row lock; only the first emits. No request body.\n\nRoles: operator.",
    params(
        ("orderId" = Uuid, Path, description = "The order id (a UUID)."),
        ("traceparent" = Option<String>, Header, description = TRACEPARENT)
    ),
    responses(
        (status = 200, description = "The shipment, now (or already) DELIVERED.", body = ShipmentView),
        (status = 400, description = "`invalid_path`: the order id is not a UUID.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no shipment for this order.", body = ErrorBody),
        (status = 409, description = "`not_dispatched`: the shipment has not been dispatched yet; `shipment_cancelled`: it was cancelled.", body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub async fn deliver(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(order_id): ApiPath<Uuid>,
    headers: HeaderMap,
) -> Result<Json<ShipmentView>, ApiError> {
    principal.require(&[Role::Operator])?;
    transition(&state, &principal, order_id, Transition::Deliver, &headers).await
}

use orderflow_service::telemetry::request_trace;

/// Applies `transition` under a row lock, so concurrent calls for one
/// shipment queue up and only the first emits the event and is recorded on
/// the audit trail as `actor`'s.
async fn transition(
    state: &AppState,
    actor: &Principal,
    order_id: Uuid,
    transition: Transition,
    headers: &HeaderMap,
) -> Result<Json<ShipmentView>, ApiError> {
    let order_id = order_id.to_string();
    let mut tx = state.pool.begin().await?;
    let shipment = db::lock(&mut tx, &order_id)
        .await
        .map_err(db_error)?
        .and_then(db::Record::into_shipment)
        .ok_or_else(|| not_found(&order_id))?;
    let next = match domain::decide(shipment.status, transition) {
        Decision::Move(next) => next,
        Decision::AlreadyDone => return Ok(Json(shipment.into())),
        Decision::Refuse(code, message) => return Err(ApiError::conflict(code, message)),
        Decision::NotFound => return Err(not_found(&order_id)),
    };
    let now = Utc::now().trunc_subsecs(3);
    let (shipment_id, tracking_number) = (
        shipment.shipment_id.to_string(),
        shipment.tracking_number.clone(),
    );
    let event: Event = match transition {
        Transition::Dispatch => ShippingDispatched {
            order_id: order_id.clone(),
            shipment_id,
            tracking_number,
            dispatched_at: now.timestamp_millis(),
        }
        .into(),
        Transition::Deliver => ShippingDelivered {
            order_id: order_id.clone(),
            shipment_id,
            tracking_number,
            delivered_at: now.timestamp_millis(),
        }
        .into(),
    };
    let mut envelope = Envelope::new(SOURCE, shipment.correlation_id.clone(), event);
    envelope.causation_id = Some(shipment.last_event_id);
    envelope.metadata = shipment.metadata.clone();
    let updated = db::set_status(&mut tx, &order_id, next, now, envelope.event_id)
        .await
        .map_err(db_error)?
        .and_then(db::Record::into_shipment)
        .ok_or_else(|| ApiError::internal(format!("shipment {order_id} vanished while locked")))?;
    let trace = request_trace(headers);
    outbox::enqueue(&mut tx, &state.catalog, &order_id, &envelope, Some(&trace))
        .await
        .map_err(outbox_error)?;
    let action = match transition {
        Transition::Dispatch => "shipment.dispatched",
        Transition::Deliver => "shipment.delivered",
    };
    let action = Action::new(action, format!("shipment:{}", updated.shipment_id))
        .on_order(&order_id, &envelope.correlation_id)
        .produced(envelope.event_id)
        .detail("status", next);
    audit::record(&mut tx, &state.catalog, SOURCE, actor, action, Some(&trace)).await?;
    tx.commit().await?;
    tracing::info!(%order_id, status = %next, event_id = %envelope.event_id, actor = %actor.sub,
        "shipment moved");
    Ok(Json(updated.into()))
}

//! The HTTP API: create, read, list and cancel orders, the timeline, and the
//! SKU catalogue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use orderflow_events::events::{Address, OrderCreated, OrderLine};
use orderflow_events::{Envelope, TopicCatalog};
use orderflow_service::{ApiError, ApiJson, ApiPath, ApiQuery, Principal, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::types::Json as SqlJson;
use sqlx::PgPool;
use uuid::Uuid;

use crate::pricing;
use crate::request::{request_hash, validate, CreateOrderRequest};
use crate::saga::{self, CancelDecision, ReasonCode, Status};
use crate::store::{self, Cause, Clock, ListFilter, OrderRow};
use crate::timeline;
use crate::writer::OrderWriter;
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
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/catalog/{sku}", get(get_catalog))
        .with_state(state)
}

/// An RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One order line in responses.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LineJson {
    sku: String,
    quantity: i32,
    unit_price: i64,
}

/// The shipping address in responses (`line2` only when present).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AddressJson {
    name: String,
    line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    postal_code: String,
    country: String,
}

/// An order as `GET /orders/{id}` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    order_id: Uuid,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<String>,
    customer_id: String,
    email: String,
    items: Vec<LineJson>,
    total: i64,
    currency: String,
    shipping_address: AddressJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking_number: Option<String>,
    /// Set while a paid saga waits past its deadline for its next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    stalled_since: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&OrderRow> for OrderJson {
    fn from(o: &OrderRow) -> Self {
        let a: &Address = &o.shipping_address.0;
        OrderJson {
            order_id: o.id,
            status: o.status.as_str(),
            reason: o.reason.clone(),
            reason_code: o.reason_code.clone(),
            customer_id: o.customer_id.clone(),
            email: o.email.clone(),
            items: o
                .items
                .0
                .iter()
                .map(|l: &OrderLine| LineJson {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            total: o.total,
            currency: o.currency.clone(),
            shipping_address: AddressJson {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            },
            payment_id: o.payment_id.clone(),
            tracking_number: o.tracking_number.clone(),
            created_at: rfc3339(&o.created_at),
            updated_at: rfc3339(&o.updated_at),
            stalled_since: o.stalled_at.as_ref().map(rfc3339),
        }
    }
}

pub use orderflow_service::telemetry::request_trace;

/// The `Idempotency-Key` header: `None` when absent; 400 when empty, longer
/// than [`MAX_IDEMPOTENCY_KEY_LEN`] or not visible ASCII.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )
    };
    let key = value.to_str().map_err(|_| bad())?.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(bad());
    }
    Ok(Some(key.to_owned()))
}

/// `X-User-Id` / `X-Session-Id` as envelope metadata (`userId`,
/// `sessionId`); empty values are ignored, over-long or non-ASCII ones are
/// 400 `invalid_header`.
pub fn request_metadata(
    headers: &HeaderMap,
) -> Result<std::collections::BTreeMap<String, String>, ApiError> {
    let mut metadata = std::collections::BTreeMap::new();
    for (header_name, key) in [("x-user-id", "userId"), ("x-session-id", "sessionId")] {
        let Some(value) = headers.get(header_name) else {
            continue;
        };
        let value = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| v.len() <= MAX_METADATA_LEN)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    format!(
                        "the {header_name} header must be at most {MAX_METADATA_LEN} visible ASCII characters"
                    ),
                )
            })?;
        if !value.is_empty() {
            metadata.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(metadata)
}

fn accepted(order_id: Uuid, status: Status, replayed: bool) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{order_id}")) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(
            HeaderName::from_static(IDEMPOTENT_REPLAYED),
            HeaderValue::from_static("true"),
        );
    }
    (
        StatusCode::ACCEPTED,
        headers,
        Json(json!({"orderId": order_id, "status": status.as_str()})),
    )
        .into_response()
}

/// Answer for a request that reuses an idempotency key: a replay when the
/// body is the same, 422 otherwise.
fn replay(existing: &OrderRow, hash: &str) -> Result<Response, ApiError> {
    if existing.request_hash.as_deref() == Some(hash) {
        Ok(accepted(existing.id, existing.status, true))
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was already used with a different request body",
        )
        .with_details(json!({"orderId": existing.id})))
    }
}

/// The customer an order is for: a customer's own id (the body may repeat
/// it, not name another), or the one a service names in the body.
fn customer_of(principal: &Principal, body: Option<String>) -> Result<Option<String>, ApiError> {
    principal.require(&[Role::Customer, Role::Service])?;
    if principal.has(Role::Service) {
        return Ok(body);
    }
    match body {
        Some(c) if c != principal.sub => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "customerId must be the token's subject: a customer orders for themself",
        )
        .with_details(json!({"customerId": c}))),
        _ => Ok(Some(principal.sub.clone())),
    }
}

/// 404 unless `principal` may see `order` (a customer sees only their
/// own: someone else's order is as if it did not exist).
fn visible(principal: &Principal, order: OrderRow) -> Result<OrderRow, ApiError> {
    if principal.may_act_for(&order.customer_id) {
        Ok(order)
    } else {
        Err(ApiError::not_found(format!("order {} not found", order.id)))
    }
}

async fn create_order(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    req.customer_id = customer_of(&principal, req.customer_id.take())?;
    let key = idempotency_key(&headers)?;
    let metadata = request_metadata(&headers)?;
    let trace = request_trace(&headers);
    let mut new = validate(&req).map_err(ApiError::validation)?;
    let hash = request_hash(&req).map_err(ApiError::internal)?;
    let skus: Vec<String> = new.items.iter().map(|l| l.sku.clone()).collect();

    // A replay answers before anything else; then unknown SKUs; then the
    // lines are priced from the catalog (one round trip for all three).
    {
        let mut conn = state.pool.acquire().await?;
        let checks = store::admission(&mut conn, key.as_deref(), &skus).await?;
        if let Some(existing) = checks.existing {
            if let Some(existing) = store::fetch_order(&mut conn, existing, false).await? {
                return replay(&existing, &hash);
            }
        }
        refuse_unknown(checks.unknown_skus)?;
        let sent: Vec<Option<i64>> = req.items.iter().map(|i| i.unit_price).collect();
        let (items, total) = pricing::price(&new.items, &sent, &new.currency, &checks.prices)
            .map_err(|e| price_error(e, &new.currency))?;
        new.items = items;
        new.total = total;
    }

    let now = Utc::now();
    let id = Uuid::now_v7();
    let order = OrderRow {
        id,
        status: Status::Pending,
        reason: None,
        reason_code: None,
        customer_id: new.customer_id,
        email: new.email,
        currency: new.currency,
        items: SqlJson(new.items),
        total: new.total,
        shipping_address: SqlJson(new.shipping_address),
        payment_token: new.payment_token,
        reserved: false,
        paid: false,
        payment_id: None,
        shipping_created: false,
        tracking_number: None,
        notified: false,
        dispatched: false,
        delivered: false,
        metadata: SqlJson(metadata),
        idempotency_key: key.clone(),
        request_hash: Some(hash.clone()),
        created_at: now,
        updated_at: now,
        deadline_at: now + state.timeout,
        stalled_at: None,
        cancel_from: None,
    };
    let mut envelope = Envelope::new(
        SOURCE,
        id.to_string(),
        OrderCreated {
            order_id: id.to_string(),
            customer_id: order.customer_id.clone(),
            email: order.email.clone(),
            currency: order.currency.clone(),
            items: order.items.0.clone(),
            total: order.total,
            shipping_address: order.shipping_address.0.clone(),
            payment_token: order.payment_token.clone(),
        },
    );
    envelope.metadata = order.metadata.0.clone();

    // Built here, in the request's span: the event carries its trace.
    let new_order = Arc::new(store::NewOrder::new(
        &state.topics,
        order,
        &envelope,
        Some(&trace.child()),
    )?);
    let order = new_order.order();

    // The order with its event is one statement (committed alone or with
    // concurrent orders, see `writer`). Two requests with one key may race:
    // the loser's insert does nothing (or hits the unique index), and on
    // its next turn it answers from the winner's order.
    for attempt in 0..3 {
        if attempt > 0 {
            let mut conn = state.pool.acquire().await?;
            let checks = store::admission(&mut conn, key.as_deref(), &skus).await?;
            if let Some(existing) = checks.existing {
                if let Some(existing) = store::fetch_order(&mut conn, existing, false).await? {
                    return replay(&existing, &hash);
                }
            }
        }
        let created = state.writer.create(Arc::clone(&new_order)).await;
        let inserted = match created {
            Ok(inserted) => inserted,
            Err(store::StoreError::Database(sqlx::Error::Database(e)))
                if e.is_unique_violation() =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        if !inserted {
            if key.is_none() {
                return Err(ApiError::internal("order insert conflicted without a key"));
            }
            continue;
        }
        crate::metrics::order_created();
        tracing::info!(order_id = %id, customer_id = %order.customer_id, total = order.total,
            currency = %order.currency, lines = order.items.0.len(), "order accepted");
        return Ok(accepted(id, Status::Pending, false));
    }
    Err(ApiError::internal(
        "idempotency key conflict could not be resolved",
    ))
}

/// 422 `unknown_sku` naming `unknown`, unless it is empty.
fn refuse_unknown(unknown: Vec<String>) -> Result<(), ApiError> {
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_sku",
        format!("unknown SKU(s): {}", unknown.join(", ")),
    )
    .with_details(json!({"skus": unknown})))
}

/// The answer to an order that cannot be priced.
fn price_error(e: pricing::PriceError, currency: &str) -> ApiError {
    use pricing::PriceError;
    match e {
        PriceError::Unpriced(skus) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unpriced_sku",
            format!("SKU(s) without a catalog price: {}", skus.join(", ")),
        )
        .with_details(json!({ "skus": skus })),
        PriceError::Currency(skus) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
            format!(
                "the order is in {currency}; SKU(s) priced in another currency: {}",
                skus.iter()
                    .map(|(s, c)| format!("{s} ({c})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_details(json!({
            "skus": skus.iter().map(|(s, c)| json!({"sku": s, "currency": c})).collect::<Vec<_>>()
        })),
        PriceError::Mismatch(lines) => ApiError::conflict(
            "price_mismatch",
            format!(
                "unitPrice differs from the catalog price for SKU(s) {}; omit unitPrice or send the catalog price",
                lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )
        .with_details(json!({ "lines": lines })),
        PriceError::TooLarge => ApiError::validation(vec![orderflow_service::error::FieldProblem::new(
            "items",
            "the order total is too large",
        )]),
    }
}

async fn load(state: &AppState, id: Uuid) -> Result<OrderRow, ApiError> {
    let mut conn = state.pool.acquire().await?;
    store::fetch_order(&mut conn, id, false)
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TimelineEventJson {
    event_id: Uuid,
    event_type: String,
    source: String,
    correlation_id: String,
    causation_id: Option<Uuid>,
    timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TimelineJson {
    order_id: Uuid,
    events: Vec<TimelineEventJson>,
}

async fn get_timeline(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TimelineJson>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let Some(order) = store::fetch_order(&mut conn, id, false).await? else {
        return Err(ApiError::not_found(format!("order {id} not found")));
    };
    visible(&principal, order)?;
    let entries = timeline::causal_order(store::timeline(&mut conn, id).await?);
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

/// Query of `GET /orders`. Everything is text so that each bad value gets
/// its own clear error.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    /// Only orders of this customer.
    pub customer_id: Option<String>,
    /// Page size, 1..=100 (default 20).
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A position in the newest-first order list: `<created_at micros>:<id>`.
pub fn encode_cursor(created_at: &DateTime<Utc>, id: Uuid) -> String {
    format!("{}:{id}", created_at.timestamp_micros())
}

/// Parses [`encode_cursor`]'s output.
pub fn decode_cursor(s: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = s.split_once(':')?;
    let micros: i64 = micros.parse().ok()?;
    Some((
        DateTime::from_timestamp_micros(micros)?,
        Uuid::parse_str(id).ok()?,
    ))
}

/// Checks the list query: filter, page size, position.
pub fn parse_list_query(q: &ListQuery) -> Result<ListFilter<'_>, ApiError> {
    fn present(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    // A filter that is given must be valid: `status=` or `limit=` is not
    // "no filter" but a value that is none of the allowed ones.
    let status = match q.status.as_deref().map(str::trim) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_status",
                format!("status must be one of {}", all.join(", ")),
            )
        })?),
    };
    let limit = match q.limit.as_deref().map(str::trim) {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    format!("limit must be an integer between 1 and {MAX_LIMIT}"),
                )
            })?,
    };
    let after = match present(&q.cursor) {
        None => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor is not a nextCursor value returned by this endpoint",
            )
        })?),
    };
    Ok(ListFilter {
        status,
        customer_id: present(&q.customer_id),
        after,
        limit,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderPageJson {
    orders: Vec<OrderJson>,
    next_cursor: Option<String>,
}

async fn list_orders(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<OrderPageJson>, ApiError> {
    principal.require(&[Role::Operator, Role::Service])?;
    let mut filter = parse_list_query(&q)?;
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut conn = state.pool.acquire().await?;
    let mut rows = store::list_orders(&mut conn, &filter).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|o| encode_cursor(&o.created_at, o.id))
    } else {
        None
    };
    let orders: Vec<OrderJson> = rows.iter().map(OrderJson::from).collect();
    Ok(Json(OrderPageJson {
        orders,
        next_cursor,
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
    let Some(order) = store::fetch_order(&mut tx, id, true).await? else {
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
            let t = store::cancel_request(&order, ReasonCode::CustomerRequest);
            let clock = Clock {
                now: Utc::now(),
                timeout: state.timeout,
            };
            store::apply_transition(
                &mut tx,
                &state.topics,
                &mut order,
                &t,
                CUSTOMER_CANCEL_REASON,
                &Cause::Local { trace },
                &clock,
            )
            .await?;
            tx.commit().await?;
            tracing::info!(order_id = %id, previous_status = %previous,
                "cancellation requested by the customer");
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
    match store::catalog_entry(&mut conn, &sku).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("ts");
        let id = Uuid::now_v7();
        let c = encode_cursor(&t, id);
        assert_eq!(decode_cursor(&c), Some((t, id)));
        for bad in [
            "",
            "abc",
            "123",
            "x:y",
            &format!("1:{}", "z".repeat(36)),
            ":",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_query_validation() {
        let q = ListQuery::default();
        let f = parse_list_query(&q).expect("defaults");
        assert_eq!(f.limit, DEFAULT_LIMIT);
        assert!(f.status.is_none() && f.customer_id.is_none() && f.after.is_none());

        let q = ListQuery {
            status: Some("PAID".into()),
            customer_id: Some("c-1".into()),
            limit: Some("100".into()),
            cursor: Some(encode_cursor(&Utc::now(), Uuid::now_v7())),
        };
        let f = parse_list_query(&q).expect("valid");
        assert_eq!(f.status, Some(Status::Paid));
        assert_eq!(f.customer_id, Some("c-1"));
        assert_eq!(f.limit, 100);
        assert!(f.after.is_some());

        let code = |q: ListQuery| parse_list_query(&q).err().map(|e| (e.status, e.code));
        for limit in ["0", "101", "-1", "ten", ""] {
            assert_eq!(
                code(ListQuery {
                    limit: Some(limit.into()),
                    ..ListQuery::default()
                }),
                Some((StatusCode::BAD_REQUEST, "invalid_limit"))
            );
        }
        for status in ["paid", "", " "] {
            assert_eq!(
                code(ListQuery {
                    status: Some(status.into()),
                    ..ListQuery::default()
                }),
                Some((StatusCode::BAD_REQUEST, "invalid_status"))
            );
        }
        assert_eq!(
            code(ListQuery {
                cursor: Some("nope".into()),
                ..ListQuery::default()
            }),
            Some((StatusCode::BAD_REQUEST, "invalid_cursor"))
        );
    }

    #[test]
    fn idempotency_keys() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h).expect("absent"), None);
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&h).expect("ok"), Some("k-1".into()));
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static(""));
        assert_eq!(
            idempotency_key(&h).err().map(|e| e.status),
            Some(StatusCode::BAD_REQUEST)
        );
        let long = HeaderValue::from_str(&"k".repeat(201)).expect("header");
        h.insert(IDEMPOTENCY_KEY, long);
        assert!(idempotency_key(&h).is_err());
        let max = HeaderValue::from_str(&"k".repeat(200)).expect("header");
        h.insert(IDEMPOTENCY_KEY, max);
        assert!(idempotency_key(&h).is_ok());
    }

    #[test]
    fn metadata_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("u-1"));
        h.insert("x-session-id", HeaderValue::from_static("s-1"));
        let m = request_metadata(&h).expect("ok");
        assert_eq!(m.get("userId").map(String::as_str), Some("u-1"));
        assert_eq!(m.get("sessionId").map(String::as_str), Some("s-1"));
        h.insert("x-session-id", HeaderValue::from_static(""));
        assert_eq!(request_metadata(&h).expect("ok").len(), 1);
        let long = HeaderValue::from_str(&"u".repeat(201)).expect("header");
        h.insert("x-user-id", long);
        assert!(request_metadata(&h).is_err());
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("ts");
        assert_eq!(rfc3339(&t), "2023-11-14T22:13:20.123Z");
    }
}

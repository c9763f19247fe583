//! `POST /orders`: idempotency, admission, pricing and the write.

use super::*;

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
        Json(AcceptedJson { order_id, status }),
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

#[utoipa::path(
    post,
    path = "/orders",
    operation_id = "createOrder",
    tag = "orders",
    summary = "Place an order",
    description = "Validates the body (every problem is listed), checks that every SKU is known, stores the order as `PENDING` and enqueues `OrderCreated`. With `Idempotency-Key`, the same key and body answer the same order again (`Idempotent-Replayed: true`, nothing new is created); the same key with another body is refused.\n\nRoles: customer (for themself: `customerId` is the token subject and may be omitted) or service (for the customer the body names).",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Client-chosen key, 1 to 200 visible ASCII characters.", min_length = 1, max_length = 200),
        ("X-User-Id" = Option<String>, Header, description = "Copied into the events' metadata as `userId` (at most 200 characters; empty is ignored).", max_length = 200),
        ("X-Session-Id" = Option<String>, Header, description = "Copied into the events' metadata as `sessionId` (at most 200 characters; empty is ignored).", max_length = 200),
        ("traceparent" = Option<String>, Header, description = "W3C trace context; the emitted events continue this trace (a new trace when absent or invalid)."),
        ("tracestate" = Option<String>, Header, description = "W3C vendor trace state, passed through.")
    ),
    request_body(content = CreateOrderRequest, content_type = "application/json", example = json!({"customerId": "c-1", "email": "ann@example.com", "currency": "EUR", "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": 1999}], "shippingAddress": {"name": "Ann", "line1": "Main St 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}, "paymentMethodId": "pm_0123456789abcdef0123456789abcdef"})),
    responses(
        (status = 202, description = "Accepted (or, with `Idempotent-Replayed: true`, the order an earlier request with the same key created; `status` is then its current status).", body = AcceptedJson, headers(("Location" = String, description = "`/orders/{orderId}`"), ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same Idempotency-Key."))),
        (status = 400, description = "`malformed_json`: the body is not JSON; `invalid_idempotency_key`: the Idempotency-Key header is empty, too long or not ASCII; `invalid_header`: X-User-Id / X-Session-Id is too long or not ASCII.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 409, description = "`price_mismatch`: a line's `unitPrice` is not the catalog price; `details.lines` lists `{sku, unitPrice, catalogPrice}`. Nothing is created.", body = ErrorBody),
        (status = 413, description = PAYLOAD_TOO_LARGE, body = ErrorBody),
        (status = 415, description = UNSUPPORTED_MEDIA_TYPE, body = ErrorBody),
        (status = 422, description = "`invalid_body`: JSON of the wrong shape (unknown or missing field, wrong type); `validation_failed`: `details` lists every invalid field with its JSON path; `unknown_sku`: `details.skus` lists the SKUs never seen in `InventoryAdjusted`; `idempotency_key_reused`: the key was used with a different body (`details.orderId`).; `unpriced_sku`: `details.skus` have no catalog price yet; `currency_mismatch`: `details.skus` are priced in another currency than the order's.", body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn create_order(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    req.customer_id = principal.customer_named(req.customer_id.take())?;
    let key = idempotency_key(&headers)?;
    let metadata = request_metadata(&headers)?;
    let trace = request_trace(&headers);
    let new = validate(&req).map_err(ApiError::validation)?;
    let hash = request_hash(&req).map_err(ApiError::internal)?;
    let skus: Vec<String> = new.items.iter().map(|l| l.sku.clone()).collect();
    let sent: Vec<Option<i64>> = req.items.iter().map(|i| i.unit_price).collect();

    // Priced from the prices this process remembers, the order is written
    // without reading first: the insert checks them against the catalogue.
    // Anything else (a SKU not remembered, a price the order does not
    // match, an old price, a taken key) goes the careful way: read the key,
    // the SKUs and the prices in one round trip, answer a replay before
    // anything else, then unknown SKUs, then price and write.
    let mut priced = state
        .prices
        .get(&skus)
        .and_then(|prices| pricing::price(&new.items, &sent, &new.currency, &prices).ok());
    for _ in 0..3 {
        let (items, total) = match priced.take() {
            Some(priced) => priced,
            None => {
                let mut conn = state.pool.acquire().await?;
                let checks = db::admission(&mut conn, key.as_deref(), &skus).await?;
                if let Some(existing) = checks.existing {
                    if let Some(existing) = db::fetch_order(&mut conn, existing, false).await? {
                        return replay(&existing, &hash);
                    }
                }
                refuse_unknown(checks.unknown_skus)?;
                state.prices.remember(&checks.prices);
                pricing::price(&new.items, &sent, &new.currency, &checks.prices)
                    .map_err(|e| price_error(e, &new.currency))?
            }
        };
        let order = acceptance::ValidatedOrder {
            items,
            total,
            ..new.clone()
        };
        let now = Utc::now();
        let id = Uuid::now_v7();
        let created = acceptance::order_created(id, &order);
        let row = OrderRow::pending(
            id,
            now,
            now + state.timeout,
            order,
            metadata.clone(),
            key.clone(),
            hash.clone(),
        );
        let mut envelope = Envelope::new(SOURCE, id.to_string(), created);
        envelope.metadata = row.metadata.0.clone();
        // Built here, in the request's span: the event carries its trace.
        let new_order = Arc::new(db::NewOrder::new(
            &state.topics,
            row,
            &envelope,
            Some(&trace.child()),
        )?);
        match write(&state, &new_order, key.is_some()).await? {
            db::Inserted::Created => {
                let order = new_order.order();
                crate::domain::metrics::order_created();
                tracing::info!(order_id = %order.id, customer_id = %order.customer_id, total = order.total,
                    currency = %order.currency, lines = order.items.0.len(), "order accepted");
                return Ok(accepted(order.id, Status::Pending, false));
            }
            // Another request with the key won a race: the next turn
            // answers from its order.
            db::Inserted::KeyTaken => {}
            db::Inserted::Stale => {
                tracing::debug!(order_id = %id, "a catalogue price changed; pricing the order again");
                state.prices.forget(&skus);
            }
        }
    }
    Err(ApiError::internal(
        "the order could not be written: its key or its prices kept changing",
    ))
}

/// Writes `new_order`: the order with its event is one statement
/// (committed alone or with concurrent orders, see `writer`). Two requests
/// with one key may race: the loser's insert does nothing (or hits the
/// unique index), and is told the key is taken.
async fn write(
    state: &AppState,
    new_order: &Arc<db::NewOrder>,
    has_key: bool,
) -> Result<db::Inserted, ApiError> {
    let inserted = match state.writer.create(Arc::clone(new_order)).await {
        Ok(inserted) => inserted,
        Err(db::StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            db::Inserted::KeyTaken
        }
        Err(e) => return Err(e.into()),
    };
    if inserted == db::Inserted::KeyTaken && !has_key {
        return Err(ApiError::internal("order insert conflicted without a key"));
    }
    Ok(inserted)
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

#[cfg(test)]
mod tests {
    use super::*;

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

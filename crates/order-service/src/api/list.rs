//! `GET /orders`: filters, cursors and pages.

use super::*;

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

#[utoipa::path(
    get,
    path = "/orders",
    operation_id = "listOrders",
    tag = "orders",
    summary = "List orders, newest first",
    description = "Orders by creation time, newest first (ties by id). Pass `nextCursor` as `cursor` for the next page; it is `null` on the last page.\n\nRoles: operator or service.",
    params(
        ("status" = Option<Status>, Query, description = "Only orders in this status."),
        ("customerId" = Option<String>, Query, description = "Only orders of this customer."),
        ("limit" = Option<i64>, Query, description = "Page size.", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "Opaque `nextCursor` of the previous page.")
    ),
    responses(
        (status = 200, description = "A page of orders.", body = OrderPageJson),
        (status = 400, description = "`invalid_status`, `invalid_limit` or `invalid_cursor`: a query parameter is invalid; `invalid_query`: the query string cannot be parsed.", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = FORBIDDEN, body = ErrorBody),
        (status = 500, description = INTERNAL, body = ErrorBody),
        (status = 503, description = DATABASE_UNAVAILABLE, body = ErrorBody)
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list_orders(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<OrderPageJson>, ApiError> {
    principal.require(&[Role::Operator, Role::Service])?;
    let mut filter = parse_list_query(&q)?;
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut conn = state.pool.acquire().await?;
    let mut rows = db::list_orders(&mut conn, &filter).await?;
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
}

//! The API's reads: an order's timeline, its last event, the order list.

use super::*;

/// The timeline of `order_id` in insertion order.
pub async fn timeline(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as!(
        TimelineEntry,
        "SELECT event_id, seq, event_type, source, correlation_id, causation_id, occurred_at \
         FROM order_timeline WHERE order_id = $1 ORDER BY seq",
        order_id
    )
    .fetch_all(conn)
    .await
}

/// The id of the last event recorded in the timeline of `order_id`.
pub async fn last_event_id(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT event_id FROM order_timeline WHERE order_id = $1 ORDER BY seq DESC LIMIT 1",
        order_id
    )
    .fetch_optional(conn)
    .await
}

/// Filters and position of a page of `GET /orders`.
pub struct ListFilter<'a> {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this customer.
    pub customer_id: Option<&'a str>,
    /// Strictly after this (created_at, id) in newest-first order.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Rows to fetch.
    pub limit: i64,
}

/// Orders newest first (created_at desc, id desc).
pub async fn list_orders(
    conn: &mut PgConnection,
    f: &ListFilter<'_>,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    let (after_ts, after_id) = f.after.unzip();
    // Optional filters, planned on every call ([`UNNAMED`]): a runtime
    // query, as sqlx's checked ones with a result are always prepared.
    sqlx::query_as(
        "SELECT * FROM orders \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::text IS NULL OR customer_id = $2) \
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .persistent(UNNAMED)
    .bind(f.status.map(Status::as_str))
    .bind(f.customer_id)
    .bind(after_ts)
    .bind(after_id)
    .bind(f.limit)
    .fetch_all(conn)
    .await
}

//! The deadline sweeper's queries: overdue orders and stalled sagas.

use super::*;

/// Marks a paid order whose deadline passed as stalled (keeping the first
/// time it was) and gives it a new deadline; returns whether it was not
/// stalled before.
pub async fn mark_stalled(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    next_deadline: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"UPDATE orders SET stalled_at = COALESCE(stalled_at, $2), deadline_at = $3
           WHERE id = $1 RETURNING stalled_at = $2 AS "newly!""#,
        id,
        now,
        next_deadline
    )
    .fetch_one(conn)
    .await
}

/// Stalled sagas by the status they are stuck in.
pub async fn stalled_by_status(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT status, count(*) AS "count!" FROM orders WHERE stalled_at IS NOT NULL
           GROUP BY status"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.count)).collect())
}

/// Open orders whose deadline passed before `now`, locked, skipping rows
/// other transactions hold.
pub async fn overdue_orders(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OrderRow>, sqlx::Error> {
    super::select_orders!(
        "WHERE status IN ('PENDING', 'INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED', \
             'CANCELLING') \
           AND deadline_at < $1 AND NOT dispatched \
         ORDER BY deadline_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit
    )
    .fetch_all(conn)
    .await
}

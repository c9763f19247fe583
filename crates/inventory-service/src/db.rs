//! Queries on `stock` and `reservations`. Every function takes the caller's
//! connection, so the caller owns the transaction.

use std::collections::HashMap;

use orderflow_events::events::StockLine;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::reservation::Status;

/// The stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    /// Stock keeping unit.
    pub sku: String,
    /// Units free to reserve.
    pub available: i32,
    /// Units held for orders.
    pub reserved: i32,
    /// Units that left the warehouse.
    pub shipped: i32,
}

/// The stock of `sku`, if the SKU is known.
pub async fn stock(conn: &mut PgConnection, sku: &str) -> sqlx::Result<Option<StockLevel>> {
    sqlx::query_as("SELECT sku, available, reserved, shipped FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_optional(conn)
        .await
}

/// Sets the units available of `sku` (creating the SKU), leaving reserved
/// and shipped units alone.
pub async fn set_available(
    conn: &mut PgConnection,
    sku: &str,
    available: i32,
) -> sqlx::Result<StockLevel> {
    sqlx::query_as(
        "INSERT INTO stock (sku, available) VALUES ($1, $2) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, updated_at = now() \
         RETURNING sku, available, reserved, shipped",
    )
    .bind(sku)
    .bind(available)
    .fetch_one(conn)
    .await
}

/// Locks the rows of `skus` (`FOR UPDATE`, in SKU order so that handlers
/// locking overlapping sets queue up instead of deadlocking) and returns the
/// units available per known SKU. Unknown SKUs are absent.
pub async fn lock_stock(
    conn: &mut PgConnection,
    skus: &[String],
) -> sqlx::Result<HashMap<String, i32>> {
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A move of units between the columns of a stock row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    /// `available → reserved`.
    Reserve,
    /// `reserved → available`.
    Release,
    /// `reserved → shipped`.
    Ship,
}

/// Moves `quantity` units of `sku`. The row must be locked by the caller;
/// a move that would make a column negative fails on its CHECK constraint.
pub async fn move_units(
    conn: &mut PgConnection,
    sku: &str,
    quantity: i32,
    movement: Movement,
) -> sqlx::Result<()> {
    let sql = match movement {
        Movement::Reserve => {
            "UPDATE stock SET available = available - $2, reserved = reserved + $2, \
             updated_at = now() WHERE sku = $1"
        }
        Movement::Release => {
            "UPDATE stock SET reserved = reserved - $2, available = available + $2, \
             updated_at = now() WHERE sku = $1"
        }
        Movement::Ship => {
            "UPDATE stock SET reserved = reserved - $2, shipped = shipped + $2, \
             updated_at = now() WHERE sku = $1"
        }
    };
    let done = sqlx::query(sql)
        .bind(sku)
        .bind(quantity)
        .execute(conn)
        .await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// True when the order already has a reservation row (of any status).
pub async fn reservation_exists(conn: &mut PgConnection, order_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)")
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// Inserts the order's reservation; `false` when the order already had one
/// (then nothing was written).
pub async fn insert_reservation(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    items: &[StockLine],
    reason: Option<&str>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO reservations (order_id, status, items, reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(Json(items))
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A reservation row, locked.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Its state.
    pub status: Status,
    /// The order's lines.
    pub items: Vec<StockLine>,
}

/// Locks and returns the order's reservation, if any.
pub async fn lock_reservation(
    conn: &mut PgConnection,
    order_id: &str,
) -> sqlx::Result<Option<Reservation>> {
    let row: Option<(String, Json<Vec<StockLine>>)> =
        sqlx::query_as("SELECT status, items FROM reservations WHERE order_id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(conn)
            .await?;
    row.map(|(status, Json(items))| {
        let status = Status::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown reservation status {status:?}").into())
        })?;
        Ok(Reservation { status, items })
    })
    .transpose()
}

/// Moves the order's reservation to `status`, recording `reason`.
pub async fn set_reservation_status(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE reservations SET status = $2, reason = COALESCE($3, reason), updated_at = now() \
         WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

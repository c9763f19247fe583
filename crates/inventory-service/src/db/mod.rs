//! Queries on `stock` and `reservations`. Every function takes the caller's
//! connection, so the caller owns the transaction.

use std::collections::HashMap;

use orderflow_events::events::StockLine;
use orderflow_events::outbox;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::PgConnection;

use crate::domain::ledger::{Held, Writes};
use crate::domain::reservation::Status;

/// The stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Stock)]
#[serde(rename_all = "camelCase")]
pub struct StockLevel {
    /// Stock keeping unit.
    pub sku: String,
    /// Units free to reserve.
    #[schema(minimum = 0)]
    pub available: i32,
    /// Units held for orders awaiting payment or dispatch.
    #[schema(minimum = 0)]
    pub reserved: i32,
    /// Units that left the warehouse.
    #[schema(minimum = 0)]
    pub shipped: i32,
    /// Catalog price of one unit, in minor units of `currency`; absent
    /// while the SKU is unpriced.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub price: Option<i64>,
    /// ISO 4217 code of `price`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub currency: Option<String>,
}

impl StockLevel {
    /// The entity tag of this stock level (`ETag`, `If-Match`): it changes
    /// whenever available, reserved or shipped units change. Two equal
    /// levels share a tag, which is what a conditional `PUT` needs: it
    /// must not overwrite a level the client has not seen.
    pub fn etag(&self) -> String {
        format!("\"{}.{}.{}\"", self.available, self.reserved, self.shipped)
    }
}

/// The stock of `sku`, if the SKU is known, locked until the transaction
/// ends (`FOR UPDATE`): for a conditional update.
pub async fn stock_for_update(
    conn: &mut PgConnection,
    sku: &str,
) -> sqlx::Result<Option<StockLevel>> {
    sqlx::query_as!(
        StockLevel,
        "SELECT sku, available, reserved, shipped, price, currency FROM stock WHERE sku = $1 \
         FOR UPDATE",
        sku
    )
    .fetch_optional(conn)
    .await
}

/// Adds `delta` (signed) to the units available of `sku` in one statement,
/// so that it composes with reservations made meanwhile. A positive delta
/// creates an unknown SKU. `None` when the result would leave `0..=max`
/// (or the SKU is unknown and `delta` is negative); nothing changes then.
pub async fn adjust_available(
    conn: &mut PgConnection,
    sku: &str,
    delta: i32,
    max: i32,
) -> sqlx::Result<Option<StockLevel>> {
    if delta >= 0 {
        sqlx::query_as!(
            StockLevel,
            "INSERT INTO stock (sku, available) SELECT $1, $2::int WHERE $2::int <= $3::int \
             ON CONFLICT (sku) DO UPDATE SET available = stock.available + EXCLUDED.available, \
             updated_at = now() \
             WHERE stock.available::bigint + EXCLUDED.available <= $3::int \
             RETURNING sku, available, reserved, shipped, price, currency",
            sku,
            delta,
            max
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            StockLevel,
            "UPDATE stock SET available = available + $2, updated_at = now() \
             WHERE sku = $1 AND available + $2 >= 0 \
             RETURNING sku, available, reserved, shipped, price, currency",
            sku,
            delta
        )
        .fetch_optional(conn)
        .await
    }
}

/// The stock of `sku`, if the SKU is known.
pub async fn stock(conn: &mut PgConnection, sku: &str) -> sqlx::Result<Option<StockLevel>> {
    sqlx::query_as!(
        StockLevel,
        "SELECT sku, available, reserved, shipped, price, currency FROM stock WHERE sku = $1",
        sku
    )
    .fetch_optional(conn)
    .await
}

/// Sets the units available of `sku` (creating the SKU), leaving reserved
/// and shipped units alone, and its catalog `price` (amount, currency) when
/// given (the price stays as it was when not).
pub async fn set_available(
    conn: &mut PgConnection,
    sku: &str,
    available: i32,
    price: Option<(i64, &str)>,
) -> sqlx::Result<StockLevel> {
    sqlx::query_as!(
        StockLevel,
        "INSERT INTO stock (sku, available, price, currency) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, \
         price = COALESCE(EXCLUDED.price, stock.price), \
         currency = COALESCE(EXCLUDED.currency, stock.currency), updated_at = now() \
         RETURNING sku, available, reserved, shipped, price, currency",
        sku,
        available,
        price.map(|(amount, _)| amount),
        price.map(|(_, currency)| currency)
    )
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
    // Not `query!`: planned on every call (`persistent(false)`), which sqlx's
    // checked queries cannot do (they are always prepared and cached).
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, available FROM stock WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(skus)
    .persistent(false)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Locks the reservations of `order_ids` (sorted, so that batches locking
/// overlapping sets queue up instead of deadlocking) and returns those that
/// exist.
pub async fn lock_reservations(
    conn: &mut PgConnection,
    order_ids: &[&str],
) -> sqlx::Result<Vec<(String, Held)>> {
    type Row = (String, String, Json<Vec<StockLine>>, Option<String>);
    // Not `query!`: planned on every call (`persistent(false)`), which sqlx's
    // checked queries cannot do (they are always prepared and cached).
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT order_id, status, items, reason FROM reservations \
         WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
    )
    .bind(order_ids)
    // Planned for each call: a generic plan made while the table was small
    // would scan it.
    .persistent(false)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(order_id, status, Json(items), reason)| {
            let status = Status::parse(&status).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown reservation status {status:?}").into())
            })?;
            Ok((
                order_id,
                Held {
                    status,
                    items,
                    reason,
                },
            ))
        })
        .collect()
}

/// Stores what a batch did, in one statement: the new reservations, the
/// new states of stored ones, the units moved per SKU and the outgoing
/// `events`. The reservations and stock rows must be locked by the caller
/// ([`lock_reservations`], [`lock_stock`]); a move that would make a
/// column negative fails on its CHECK constraint.
pub async fn write_batch(
    conn: &mut PgConnection,
    writes: Writes,
    events: outbox::Rows,
) -> sqlx::Result<()> {
    let (mut ids, mut statuses, mut items, mut reasons) = (vec![], vec![], vec![], vec![]);
    for (id, held) in writes.created {
        ids.push(id);
        statuses.push(held.status.as_str());
        items.push(serde_json::to_value(&held.items).map_err(|e| sqlx::Error::Encode(e.into()))?);
        reasons.push(held.reason);
    }
    let (mut s_ids, mut s_statuses, mut s_reasons) = (vec![], vec![], vec![]);
    for (id, status, reason) in writes.settled {
        s_ids.push(id);
        s_statuses.push(status.as_str());
        s_reasons.push(reason);
    }
    let units = |sku: &str, n: i64| {
        i32::try_from(n).map_err(|_| {
            sqlx::Error::Encode(format!("a move of {n} units of {sku} is out of range").into())
        })
    };
    let (mut skus, mut available, mut reserved, mut shipped) = (vec![], vec![], vec![], vec![]);
    for (sku, d) in &writes.moves {
        available.push(units(sku, d.available)?);
        reserved.push(units(sku, d.reserved)?);
        shipped.push(units(sku, d.shipped)?);
        skus.push(sku.as_str());
    }
    let moved: i64 = orderflow_events::query_queueing!(
        with: "created AS (\
                 INSERT INTO reservations (order_id, status, items, reason) \
                 SELECT * FROM unnest($7::text[], $8::text[], $9::jsonb[], $10::text[])), \
               settled AS (\
                 UPDATE reservations r SET status = u.status, reason = u.reason, updated_at = now() \
                 FROM unnest($11::text[], $12::text[], $13::text[]) AS u(order_id, status, reason) \
                 WHERE r.order_id = u.order_id), \
               moved AS (\
                 UPDATE stock SET available = stock.available + m.available, \
                   reserved = stock.reserved + m.reserved, shipped = stock.shipped + m.shipped, \
                   updated_at = now() \
                 FROM unnest($14::text[], $15::int[], $16::int[], $17::int[]) \
                   AS m(sku, available, reserved, shipped) \
                 WHERE stock.sku = m.sku RETURNING stock.sku)",
        when: "true",
        then: "SELECT count(*) AS \"moved!\" FROM moved",
        rows: &events,
        &ids,
        &statuses as &[&str],
        &items,
        &reasons as &[Option<String>],
        &s_ids,
        &s_statuses as &[&str],
        &s_reasons as &[Option<String>],
        &skus as &[&str],
        &available,
        &reserved,
        &shipped,
    )
    .fetch_one(conn)
    .await?
    .moved;
    // The rows are locked, so a missing one means the stock row is gone.
    if usize::try_from(moved).ok() == Some(skus.len()) {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

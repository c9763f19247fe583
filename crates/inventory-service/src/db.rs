//! Queries on `stock` and `reservations`. Every function takes the caller's
//! connection, so the caller owns the transaction.

use std::collections::HashMap;
use std::sync::LazyLock;

use orderflow_events::events::StockLine;
use orderflow_events::outbox;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

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

impl Movement {
    const ALL: [Movement; 3] = [Movement::Reserve, Movement::Release, Movement::Ship];

    /// The `SET` list moving `m.quantity` units of a `stock` row.
    fn set_list(self) -> &'static str {
        match self {
            Movement::Reserve => {
                "available = stock.available - m.quantity, reserved = stock.reserved + m.quantity"
            }
            Movement::Release => {
                "reserved = stock.reserved - m.quantity, available = stock.available + m.quantity"
            }
            Movement::Ship => {
                "reserved = stock.reserved - m.quantity, shipped = stock.shipped + m.quantity"
            }
        }
    }
}

/// Units to move, per SKU, all in one direction.
#[derive(Debug, Clone)]
pub struct Moves {
    movement: Movement,
    skus: Vec<String>,
    quantities: Vec<i32>,
}

impl Moves {
    /// No units yet.
    pub fn new(movement: Movement) -> Self {
        Self {
            movement,
            skus: Vec::new(),
            quantities: Vec::new(),
        }
    }

    /// Moves `quantity` units of `sku` (each SKU once).
    pub fn push(&mut self, sku: &str, quantity: i32) {
        self.skus.push(sku.to_owned());
        self.quantities.push(quantity);
    }

    /// `name AS (UPDATE stock …)`: a `WITH` item moving the units bound as
    /// parameters `$first` (SKUs) and `$first + 1` (quantities) when the
    /// SQL `condition` holds, returning one row per SKU moved.
    fn cte(movement: Movement, name: &str, first: usize, condition: &str) -> String {
        format!(
            "{name} AS (UPDATE stock SET {}, updated_at = now() \
             FROM unnest(${first}::text[], ${}::int[]) AS m(sku, quantity) \
             WHERE stock.sku = m.sku AND {condition} RETURNING stock.sku)",
            movement.set_list(),
            first + 1
        )
    }

    /// Checks that every SKU moved: the rows are locked by the caller, so a
    /// missing one means the stock row is gone.
    fn check(&self, moved: i64) -> sqlx::Result<()> {
        if usize::try_from(moved).ok() == Some(self.skus.len()) {
            Ok(())
        } else {
            Err(sqlx::Error::RowNotFound)
        }
    }
}

/// Inserts the order's reservation, moves `moves` and queues `events`, in
/// one statement; `false` when the order already had a reservation (then
/// nothing was written). The stock rows must be locked by the caller
/// ([`lock_stock`]); a move that would make a column negative fails on its
/// CHECK constraint.
pub async fn insert_reservation(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    items: &[StockLine],
    reason: Option<&str>,
    moves: Moves,
    events: outbox::Rows,
) -> sqlx::Result<bool> {
    static SQL: LazyLock<[String; 3]> = LazyLock::new(|| {
        let inserted = "EXISTS (SELECT 1 FROM reservation)";
        Movement::ALL.map(|movement| {
            format!(
                "WITH reservation AS (\
                   INSERT INTO reservations (order_id, status, items, reason) \
                   VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING RETURNING order_id), \
                 {}, {} \
                 SELECT (SELECT count(*) FROM reservation), (SELECT count(*) FROM moved)",
                Moves::cte(movement, "moved", 5, inserted),
                outbox::Rows::cte_when("queued", 7, inserted),
            )
        })
    });
    let (inserted, moved): (i64, i64) = events
        .bind(
            sqlx::query(SQL[moves.movement as usize].as_str())
                .bind(order_id)
                .bind(status.as_str())
                .bind(Json(items))
                .bind(reason)
                .bind(&moves.skus)
                .bind(&moves.quantities),
        )
        .try_map(|row: sqlx::postgres::PgRow| Ok((row.try_get(0)?, row.try_get(1)?)))
        .fetch_one(conn)
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    moves.check(moved)?;
    Ok(true)
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

/// Moves the order's reservation (locked by the caller,
/// [`lock_reservation`]) to `status` recording `reason`, moves `moves` and
/// queues `events`, in one statement. The stock rows must be locked by the
/// caller ([`lock_stock`]).
pub async fn settle_reservation(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    reason: Option<&str>,
    moves: Moves,
    events: outbox::Rows,
) -> sqlx::Result<()> {
    static SQL: LazyLock<[String; 3]> = LazyLock::new(|| {
        Movement::ALL.map(|movement| {
            format!(
                "WITH reservation AS (\
                   UPDATE reservations SET status = $2, reason = COALESCE($3, reason), \
                   updated_at = now() WHERE order_id = $1), \
                 {}, {} \
                 SELECT count(*) FROM moved",
                Moves::cte(movement, "moved", 4, "true"),
                outbox::Rows::cte("queued", 6),
            )
        })
    });
    let moved: i64 = events
        .bind(
            sqlx::query(SQL[moves.movement as usize].as_str())
                .bind(order_id)
                .bind(status.as_str())
                .bind(reason)
                .bind(&moves.skus)
                .bind(&moves.quantities),
        )
        .try_map(|row: sqlx::postgres::PgRow| row.try_get(0))
        .fetch_one(conn)
        .await?;
    moves.check(moved)
}

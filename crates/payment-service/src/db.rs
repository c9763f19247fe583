//! Queries on `payments`. Every function takes the caller's connection, so
//! the caller owns the transaction.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The state of an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Charged.
    Processed,
    /// The gateway refused the charge.
    Declined,
    /// Charged, then refunded because the order was cancelled.
    Refunded,
    /// Tombstone: the order was cancelled before any charge, so none will
    /// be made.
    Voided,
}

impl Status {
    /// The database and API representation.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "PROCESSED",
            Status::Declined => "DECLINED",
            Status::Refunded => "REFUNDED",
            Status::Voided => "VOIDED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored payment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Payment {
    /// Order id.
    pub order_id: String,
    /// Payment id.
    pub payment_id: Uuid,
    /// `PROCESSED`, `DECLINED`, `REFUNDED` or `VOIDED`.
    pub status: String,
    /// Amount in minor units (0 for a tombstone).
    pub amount: i64,
    /// ISO 4217 currency (none for a tombstone).
    pub currency: Option<String>,
    /// Gateway decline code, when declined.
    pub decline_code: Option<String>,
    /// Why it was declined, refunded or voided.
    pub reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Refunded.
    pub refunded_at: Option<DateTime<Utc>>,
}

/// The payment of `order_id`, if any.
pub async fn payment(conn: &mut PgConnection, order_id: &str) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as(
        "SELECT order_id, payment_id, status, amount, currency, decline_code, reason, \
         created_at, updated_at, refunded_at FROM payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

/// A payment about to be recorded.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    /// Order id.
    pub order_id: &'a str,
    /// Payment id.
    pub payment_id: Uuid,
    /// Its status.
    pub status: Status,
    /// Amount in minor units.
    pub amount: i64,
    /// ISO 4217 currency.
    pub currency: Option<&'a str>,
    /// Payment method token.
    pub payment_token: Option<&'a str>,
    /// Gateway decline code.
    pub decline_code: Option<&'a str>,
    /// Why.
    pub reason: Option<&'a str>,
}

/// Records the order's payment; `false` (and nothing written) when the
/// order already has one, charged or a tombstone. A concurrent insert for
/// the same order waits on the primary key and then finds it.
pub async fn insert(conn: &mut PgConnection, p: &NewPayment<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO payments \
         (order_id, payment_id, status, amount, currency, payment_token, decline_code, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(p.order_id)
    .bind(p.payment_id)
    .bind(p.status.as_str())
    .bind(p.amount)
    .bind(p.currency)
    .bind(p.payment_token)
    .bind(p.decline_code)
    .bind(p.reason)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a refund gives back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Refund {
    /// Payment id.
    pub payment_id: Uuid,
    /// Amount in minor units.
    pub amount: i64,
    /// ISO 4217 currency.
    pub currency: Option<String>,
}

/// Refunds the order's payment if it is `PROCESSED`; `None` when there is
/// nothing to refund (declined, already refunded, voided).
pub async fn refund(
    conn: &mut PgConnection,
    order_id: &str,
    reason: &str,
) -> sqlx::Result<Option<Refund>> {
    sqlx::query_as(
        "UPDATE payments SET status = 'REFUNDED', reason = $2, refunded_at = now(), \
         updated_at = now() WHERE order_id = $1 AND status = 'PROCESSED' \
         RETURNING payment_id, amount, currency",
    )
    .bind(order_id)
    .bind(reason)
    .fetch_optional(conn)
    .await
}

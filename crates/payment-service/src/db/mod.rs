//! Queries on `payments` (here) and `payment_methods` ([`methods`]). Every
//! function takes the caller's connection, so the caller owns the
//! transaction.

mod methods;

pub use methods::{find_method, find_methods, insert_method, MethodRow};

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use orderflow_events::outbox;
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
    sqlx::query_as!(
        Payment,
        "SELECT order_id, payment_id, status, amount, currency, decline_code, reason, \
         created_at, updated_at, refunded_at FROM payments WHERE order_id = $1",
        order_id
    )
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
    let done = sqlx::query!(
        "INSERT INTO payments \
         (order_id, payment_id, status, amount, currency, payment_token, decline_code, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING",
        p.order_id,
        p.payment_id,
        p.status.as_str(),
        p.amount,
        p.currency,
        p.payment_token,
        p.decline_code,
        p.reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the payments of several orders (each order once) and queues
/// `events`, in one statement. An order that already has a payment keeps
/// it, and its events (those keyed by its id) are not queued. Returns the
/// orders whose payment was recorded.
pub async fn insert_all(
    conn: &mut PgConnection,
    payments: &[NewPayment<'_>],
    events: &outbox::Rows,
) -> sqlx::Result<HashSet<String>> {
    let column = |f: fn(&NewPayment<'_>) -> Option<String>| -> Vec<Option<String>> {
        payments.iter().map(f).collect()
    };
    let ids: Vec<&str> = payments.iter().map(|p| p.order_id).collect();
    let payment_ids: Vec<Uuid> = payments.iter().map(|p| p.payment_id).collect();
    let statuses: Vec<&str> = payments.iter().map(|p| p.status.as_str()).collect();
    let amounts: Vec<i64> = payments.iter().map(|p| p.amount).collect();
    let paid: Vec<String> = orderflow_events::query_queueing!(
        with: "paid AS (\
               INSERT INTO payments \
               (order_id, payment_id, status, amount, currency, payment_token, decline_code, reason) \
               SELECT * FROM unnest($7::text[], $8::uuid[], $9::text[], $10::int8[], $11::text[], \
                 $12::text[], $13::text[], $14::text[]) \
               ON CONFLICT (order_id) DO NOTHING RETURNING order_id)",
        when: "e.partition_key IN (SELECT order_id FROM paid)",
        then: "SELECT order_id AS \"order_id!\" FROM paid",
        rows: events,
        &ids as &[&str],
        &payment_ids,
        &statuses as &[&str],
        &amounts,
        &column(|p| p.currency.map(str::to_owned)) as &[Option<String>],
        &column(|p| p.payment_token.map(str::to_owned)) as &[Option<String>],
        &column(|p| p.decline_code.map(str::to_owned)) as &[Option<String>],
        &column(|p| p.reason.map(str::to_owned)) as &[Option<String>],
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(|r| r.order_id)
    .collect();
    Ok(paid.into_iter().collect())
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
    sqlx::query_as!(
        Refund,
        "UPDATE payments SET status = 'REFUNDED', reason = $2, refunded_at = now(), \
         updated_at = now() WHERE order_id = $1 AND status = 'PROCESSED' \
         RETURNING payment_id, amount, currency",
        order_id,
        reason
    )
    .fetch_optional(conn)
    .await
}

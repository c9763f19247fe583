//! Queries on `payment_methods`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::methods::Method;

/// Records a payment method; returns when it was created.
pub async fn insert_method(
    conn: &mut PgConnection,
    id: &str,
    customer_id: &str,
    token: &str,
) -> sqlx::Result<DateTime<Utc>> {
    sqlx::query_scalar!(
        "INSERT INTO payment_methods (id, customer_id, token) VALUES ($1, $2, $3) \
         RETURNING created_at",
        id,
        customer_id,
        token
    )
    .fetch_one(conn)
    .await
}

/// The payment methods among `ids` that exist, by id (one statement for a
/// whole batch).
pub async fn find_methods(
    conn: &mut PgConnection,
    ids: &[&str],
) -> sqlx::Result<HashMap<String, Method>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    // Not `query!`: planned on every call (`persistent(false)`), which sqlx's
    // checked queries cannot do (they are always prepared and cached).
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, customer_id, token FROM payment_methods WHERE id = ANY($1)")
            .bind(ids)
            .persistent(false)
            .fetch_all(conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, customer_id, token)| (id, Method { customer_id, token }))
        .collect())
}

/// One payment method as the API shows it (never its token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MethodRow {
    /// `pm_…`.
    pub id: String,
    /// Whose it is.
    pub customer_id: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// The payment method `id`, if it exists.
pub async fn find_method(conn: &mut PgConnection, id: &str) -> sqlx::Result<Option<MethodRow>> {
    sqlx::query_as!(
        MethodRow,
        "SELECT id, customer_id, created_at FROM payment_methods WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await
}

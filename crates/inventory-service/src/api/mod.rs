//! HTTP API: `GET /inventory/{sku}`, `PUT /inventory/{sku}` (optionally
//! conditional on `If-Match`) and `POST /inventory/{sku}/adjustments`.
//!
//! Reservations move units out of `available` at any moment, so a client
//! that reads the stock and writes back an absolute number can undo one.
//! Two safe ways to change stock: a relative adjustment (`{"delta": 10}`,
//! applied in one statement), or a `PUT` with `If-Match: <ETag of the level
//! it read>`, refused with 412 when the level changed meanwhile.

mod request;
mod routes;

pub use request::*;

use axum::routing::{get, post};
use axum::Router;
use orderflow_events::TopicCatalog;
use sqlx::PgPool;

use routes::{adjust_stock, get_stock, put_stock};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// The inventory routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/inventory/{sku}", get(get_stock).put(put_stock))
        .route("/inventory/{sku}/adjustments", post(adjust_stock))
        .with_state(state)
}

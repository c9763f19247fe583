//! The HTTP API: read a shipment and its label, dispatch and deliver it.

mod routes;
mod view;

use axum::routing::{get, post};
use axum::Router;
use orderflow_events::TopicCatalog;
use sqlx::PgPool;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The service database.
    pub pool: PgPool,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// The shipping routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/shipments/{order_id}", get(routes::get_shipment))
        .route("/shipments/{order_id}/label", get(routes::get_label))
        .route("/shipments/{order_id}/dispatch", post(routes::dispatch))
        .route("/shipments/{order_id}/deliver", post(routes::deliver))
        .with_state(state)
}

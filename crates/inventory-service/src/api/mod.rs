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

use orderflow_events::TopicCatalog;
use orderflow_service::{routes, ApiRouter};
use sqlx::PgPool;
use utoipa::OpenApi;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// The document's title, description and tags; the operations come from
/// the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow inventory service",
        description = "Stock per SKU. `PUT` sets the units available (absolute) and emits `InventoryAdjusted` (key: the SKU) in the same transaction. The saga moves units between the columns: `OrderCreated` reserves every line or none (`InventoryReserved` / `InventoryReservationFailed`), `PaymentFailed` and `OrderCancelled` release a held reservation (`InventoryReleased`), `ShippingDispatched` ships it. `available + reserved + shipped` only changes through `PUT`. Every error body is `{\"code\",\"message\",\"details\"?}`."
    ),
    tags((name = "inventory"), (name = "health"))
)]
struct Doc;

/// The inventory routes, documented.
pub fn router(state: AppState) -> ApiRouter {
    ApiRouter::new(Doc::openapi())
        .routes(routes!(routes::get_stock, routes::put_stock))
        .routes(routes!(routes::adjust_stock))
        .with_state(state)
}

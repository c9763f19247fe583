//! The HTTP API: read a shipment and its label, dispatch and deliver it.

mod routes;
mod view;

use orderflow_events::TopicCatalog;
use orderflow_service::{routes, ApiRouter};
use sqlx::PgPool;
use utoipa::OpenApi;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The service database.
    pub pool: PgPool,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// The document's title, description and tags; the operations come from
/// the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow shipping service",
        description = "Shipments of paid orders. A shipment is created by the `PaymentProcessed` event (emitting `ShippingCreated`), cancelled while not dispatched, and moved through dispatch (`ShippingDispatched`) and delivery (`ShippingDelivered`) by the POST routes below. This service is the one authority on the saga's pivot: it answers every cancellation request (`OrderCancellationRequested`) under the same row lock as `dispatch`, with `ShippingCancelled` (no shipment, or one that had not left, now `CANCELLED`; a later `PaymentProcessed` creates none) or `ShippingCancellationRejected` (already `DISPATCHED` or `DELIVERED`), so a cancel and a dispatch racing for one order never both win. Repeating a transition already made answers 200 and emits nothing; an impossible one is 409. Every error body is `{\"code\",\"message\",\"details\"?}`."
    ),
    tags((name = "shipments"), (name = "health"))
)]
struct Doc;

/// The shipping routes, documented.
pub fn router(state: AppState) -> ApiRouter {
    ApiRouter::new(Doc::openapi())
        .routes(routes!(routes::get_shipment))
        .routes(routes!(routes::get_label))
        .routes(routes!(routes::dispatch))
        .routes(routes!(routes::deliver))
        .with_state(state)
}

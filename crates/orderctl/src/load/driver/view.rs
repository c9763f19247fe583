//! What `orderctl load` reads back from the order API: the order service's
//! own answer types, so the two cannot drift apart.

pub(super) use order_service::api::view::{AcceptedJson, OrderJson, OrderPageJson, TimelineJson};
pub(super) use order_service::domain::saga::Status;
pub(super) use orderflow_service::ErrorBody;

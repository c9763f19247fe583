//! What `orderctl load` reads back from the order API.

use super::*;

/// An order as the list endpoint shows it (the fields we need).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderView {
    pub(super) order_id: String,
    pub(super) status: String,
    pub(super) reason_code: Option<String>,
    pub(super) updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OrderPage {
    pub(super) orders: Vec<OrderView>,
    pub(super) next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Accepted {
    pub(super) order_id: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TimelineEvent {
    pub(super) event_type: String,
    pub(super) timestamp: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Timeline {
    pub(super) events: Vec<TimelineEvent>,
}

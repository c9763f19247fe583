//! The JSON shape of a shipment.

use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_events::events::{Address, StockLine};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::Shipment;
use crate::domain::Status;

/// A shipment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Shipment)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    #[schema(format = Uuid)]
    order_id: String,
    #[schema(format = Uuid)]
    shipment_id: String,
    #[schema(pattern = "^OF[0-9]{12}$", example = "OF123456789012")]
    tracking_number: String,
    #[schema(example = "OrderFlow Post")]
    carrier: String,
    /// Path of the label, relative to this service.
    #[schema(example = "/shipments/0b3c1c1e-5d8e-4b7a-9c1f-2a6f1d0e9b11/label")]
    label_url: String,
    status: ShipmentStatus,
    recipient: Address,
    items: Vec<StockLine>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Present once dispatched.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    dispatched_at: Option<String>,
    /// Present once delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    delivered_at: Option<String>,
}

/// Where a shipment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    /// Waiting to leave the warehouse.
    Created,
    /// Handed to the carrier.
    Dispatched,
    /// Arrived.
    Delivered,
    /// The order was cancelled before dispatch.
    Cancelled,
}

impl From<Status> for ShipmentStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Created => Self::Created,
            Status::Dispatched => Self::Dispatched,
            Status::Delivered => Self::Delivered,
            // A tombstone is never shown as a shipment; were it, it is
            // an order cancelled before one existed.
            Status::Cancelled | Status::Voided => Self::Cancelled,
        }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<Shipment> for ShipmentView {
    fn from(s: Shipment) -> Self {
        Self {
            order_id: s.order_id,
            shipment_id: s.shipment_id.to_string(),
            tracking_number: s.tracking_number,
            carrier: s.carrier,
            label_url: s.label_url,
            status: s.status.into(),
            recipient: s.recipient,
            items: s.items,
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
            dispatched_at: s.dispatched_at.map(ts),
            delivered_at: s.delivered_at.map(ts),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::domain::Status;

    #[test]
    fn json_is_camel_case_with_optional_timestamps() {
        let created = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .expect("ts");
        let mut s = Shipment {
            order_id: "0b3c1c1e-0000-4000-8000-000000000001".into(),
            shipment_id: Uuid::nil(),
            tracking_number: "OF000000000001".into(),
            carrier: "OrderFlow Post".into(),
            label_url: "/shipments/x/label".into(),
            status: Status::Created,
            recipient: Address {
                name: "Ann".into(),
                line1: "Main St 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            items: vec![StockLine {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
            correlation_id: "c".into(),
            last_event_id: Uuid::nil(),
            metadata: BTreeMap::new(),
            created_at: created,
            updated_at: created,
            dispatched_at: None,
            delivered_at: None,
        };
        let json = serde_json::to_value(ShipmentView::from(s.clone())).expect("json");
        assert_eq!(json["trackingNumber"], "OF000000000001");
        assert_eq!(json["status"], "CREATED");
        assert_eq!(json["recipient"]["postalCode"], "10115");
        assert_eq!(json["items"][0]["quantity"], 2);
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20.123Z");
        assert!(json.get("dispatchedAt").is_none());
        assert!(json.get("deliveredAt").is_none());

        s.status = Status::Dispatched;
        s.dispatched_at = Some(created);
        let json = serde_json::to_value(ShipmentView::from(s)).expect("json");
        assert_eq!(json["status"], "DISPATCHED");
        assert_eq!(json["dispatchedAt"], "2023-11-14T22:13:20.123Z");
    }
}

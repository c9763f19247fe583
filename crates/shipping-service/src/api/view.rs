//! The JSON shape of a shipment.

use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_events::events::{Address, StockLine};
use serde::Serialize;

use crate::db::Shipment;

/// `GET /shipments/{orderId}` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    order_id: String,
    shipment_id: String,
    tracking_number: String,
    carrier: String,
    label_url: String,
    status: &'static str,
    recipient: Address,
    items: Vec<StockLine>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatched_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
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
            status: s.status.as_str(),
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

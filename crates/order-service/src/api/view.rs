//! The JSON shapes the order API answers with.

use super::*;

/// An RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One order line in responses.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineJson {
    pub(crate) sku: String,
    pub(crate) quantity: i32,
    pub(crate) unit_price: i64,
}

/// The shipping address in responses (`line2` only when present).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AddressJson {
    pub(crate) name: String,
    line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    pub(crate) city: String,
    pub(crate) postal_code: String,
    pub(crate) country: String,
}

/// An order as `GET /orders/{id}` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    pub(crate) order_id: Uuid,
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason_code: Option<String>,
    pub(crate) customer_id: String,
    pub(crate) email: String,
    pub(crate) items: Vec<LineJson>,
    pub(crate) total: i64,
    pub(crate) currency: String,
    pub(crate) shipping_address: AddressJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) payment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tracking_number: Option<String>,
    /// Set while a paid saga waits past its deadline for its next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stalled_since: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

impl From<&OrderRow> for OrderJson {
    fn from(o: &OrderRow) -> Self {
        let a: &Address = &o.shipping_address.0;
        OrderJson {
            order_id: o.id,
            status: o.status.as_str(),
            reason: o.reason.clone(),
            reason_code: o.reason_code.clone(),
            customer_id: o.customer_id.clone(),
            email: o.email.clone(),
            items: o
                .items
                .0
                .iter()
                .map(|l: &OrderLine| LineJson {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            total: o.total,
            currency: o.currency.clone(),
            shipping_address: AddressJson {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            },
            payment_id: o.payment_id.clone(),
            tracking_number: o.tracking_number.clone(),
            created_at: rfc3339(&o.created_at),
            updated_at: rfc3339(&o.updated_at),
            stalled_since: o.stalled_at.as_ref().map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimelineEventJson {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) source: String,
    pub(crate) correlation_id: String,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TimelineJson {
    pub(crate) order_id: Uuid,
    pub(crate) events: Vec<TimelineEventJson>,
}
/// One event of an order's journal: the envelope and where the log holds
/// it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalEventJson {
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) event_version: i32,
    pub(crate) source: String,
    pub(crate) correlation_id: String,
    pub(crate) causation_id: Option<Uuid>,
    pub(crate) timestamp: String,
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

impl From<crate::db::journal::JournalRow> for JournalEventJson {
    fn from(r: crate::db::journal::JournalRow) -> Self {
        Self {
            event_id: r.event_id,
            event_type: r.event_type,
            event_version: r.event_version,
            source: r.source,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            timestamp: rfc3339(&r.occurred_at),
            topic: r.topic,
            partition: r.kafka_partition,
            offset: r.kafka_offset,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalJson {
    pub(crate) order_id: Uuid,
    pub(crate) events: Vec<JournalEventJson>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OrderPageJson {
    pub(crate) orders: Vec<OrderJson>,
    pub(crate) next_cursor: Option<String>,
}

//! The JSON shapes the order API answers with. They are also how clients
//! read those answers (`orderctl load`, the end-to-end tests), so each
//! derives `Deserialize` too and has public fields.

use super::*;
use crate::domain::saga::Status;

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Status::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Status {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Where the order's saga stands."))
            .enum_values(Some(Status::ALL.map(Status::as_str)))
            .into()
    }
}

impl ToSchema for Status {}

/// `GET /catalog/{sku}`: what the order service knows of a SKU from
/// `InventoryAdjusted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = CatalogEntry)]
#[serde(rename_all = "camelCase")]
pub struct CatalogJson {
    /// Stock keeping unit.
    pub sku: String,
    /// Units available as last adjusted.
    pub available: i32,
    /// Catalog price of one unit in minor units; absent while the SKU is
    /// unpriced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub price: Option<i64>,
    /// ISO 4217 code of `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub currency: Option<String>,
}

/// The answer to `POST /orders` (202), also to a replay of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderAccepted)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedJson {
    /// The order's id.
    pub order_id: Uuid,
    /// Its status: `PENDING` when new, where it stands for a replay.
    pub status: Status,
}

/// An RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One order line in responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderLine)]
#[serde(rename_all = "camelCase")]
pub struct LineJson {
    /// Stock keeping unit.
    pub sku: String,
    /// Units ordered.
    pub quantity: i32,
    /// Price of one unit in minor units.
    pub unit_price: i64,
}

/// The shipping address in responses (`line2` only when present).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ShippingAddress)]
#[serde(rename_all = "camelCase")]
pub struct AddressJson {
    /// Recipient.
    pub name: String,
    /// First address line.
    pub line1: String,
    /// Second address line, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// An order as `GET /orders/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Order)]
#[serde(rename_all = "camelCase")]
pub struct OrderJson {
    /// The order id.
    pub order_id: Uuid,
    /// Where its saga stands.
    pub status: Status,
    /// Why it was cancelled (for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Why it was cancelled (for programs), e.g. `out_of_stock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason_code: Option<String>,
    /// Who ordered.
    pub customer_id: String,
    /// Where its e-mails go.
    pub email: String,
    /// Its lines.
    pub items: Vec<LineJson>,
    /// Total in minor units.
    pub total: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Where it ships.
    pub shipping_address: AddressJson,
    /// The payment, once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub payment_id: Option<String>,
    /// The carrier's tracking number, once shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tracking_number: Option<String>,
    /// Set while a paid saga waits past its deadline for its next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    pub stalled_since: Option<String>,
    /// When it was accepted (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its status last changed (RFC 3339).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&OrderRow> for OrderJson {
    fn from(o: &OrderRow) -> Self {
        let a: &Address = &o.shipping_address.0;
        OrderJson {
            order_id: o.id,
            status: o.status,
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

/// One event of `GET /orders/{id}/timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = TimelineEvent)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEventJson {
    /// The event id.
    pub event_id: Uuid,
    /// Its type, e.g. `OrderCreated`.
    pub event_type: String,
    /// The service that published it.
    pub source: String,
    /// The saga it belongs to (the order id).
    pub correlation_id: String,
    /// The event that caused it.
    pub causation_id: Option<Uuid>,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// `GET /orders/{id}/timeline`: what happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Timeline)]
#[serde(rename_all = "camelCase")]
pub struct TimelineJson {
    /// The order.
    pub order_id: Uuid,
    /// Its events in the order they happened.
    pub events: Vec<TimelineEventJson>,
}

/// One event of an order's journal: the envelope and where the log holds
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = JournalEvent)]
#[serde(rename_all = "camelCase")]
pub struct JournalEventJson {
    /// The event id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its schema version.
    pub event_version: i32,
    /// The service that published it.
    pub source: String,
    /// The saga it belongs to.
    pub correlation_id: String,
    /// The event that caused it.
    pub causation_id: Option<Uuid>,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The topic that holds it.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
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

/// `GET /orders/{id}/journal`: an order's events as the log holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Journal)]
#[serde(rename_all = "camelCase")]
pub struct JournalJson {
    /// The order.
    pub order_id: Uuid,
    /// Its events in log order.
    pub events: Vec<JournalEventJson>,
}

/// One page of `GET /orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = OrderPage)]
#[serde(rename_all = "camelCase")]
pub struct OrderPageJson {
    /// The orders of this page.
    pub orders: Vec<OrderJson>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_api_writes_its_clients_read_back() {
        let json = serde_json::json!({
            "orderId": "0190f3b2-1c4d-7a8e-9f00-0123456789ab",
            "status": "SHIPPING_CREATED",
            "customerId": "c-1",
            "email": "c1@example.com",
            "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": 1250}],
            "total": 2500,
            "currency": "EUR",
            "shippingAddress": {
                "name": "Ada", "line1": "1 Main St", "city": "Berlin",
                "postalCode": "10115", "country": "DE"
            },
            "paymentId": "pay-1",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:01.000Z"
        });
        let order: OrderJson = serde_json::from_value(json.clone()).expect("an order");
        assert_eq!(order.status, Status::ShippingCreated);
        assert_eq!(order.shipping_address.line2, None);
        assert_eq!(
            serde_json::to_value(&order).expect("json"),
            json,
            "absent stays absent"
        );

        let mut unknown = json;
        unknown["status"] = "LOST".into();
        let e = serde_json::from_value::<OrderJson>(unknown).expect_err("no such status");
        assert!(e.to_string().contains("LOST"), "{e}");
    }
}

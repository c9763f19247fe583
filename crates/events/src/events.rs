//! The saga's event payloads: one Rust type per event, one Avro schema per
//! event in `schemas/` (embedded here at build time), and the stream each
//! event is published on.

use serde::{Deserialize, Serialize};

use crate::error::CodecError;
use crate::topics::Stream;

/// Namespace of every event record in `schemas/`.
pub const SCHEMA_NAMESPACE: &str = "com.orderflow.events";

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Recipient name.
    pub name: String,
    /// First address line.
    pub line1: String,
    /// Optional second address line.
    #[serde(default)]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// Units ordered (> 0).
    pub quantity: i32,
    /// Unit price in minor units.
    pub unit_price: i64,
}

/// A quantity of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StockLine {
    /// Stock keeping unit.
    pub sku: String,
    /// Units.
    pub quantity: i32,
}

macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name { $($(#[$fdoc])* pub $field: $ty),* }
    };
}

payload!(/// `OrderCreated` payload.
    OrderCreated { /// Order id.
    order_id: String, /// Customer id.
    customer_id: String, /// Customer e-mail.
    email: String, /// ISO 4217 currency.
    currency: String, /// Order lines.
    items: Vec<OrderLine>, /// Total in minor units.
    total: i64, /// Where to ship.
    shipping_address: Address, /// Payment method token: only in events
    /// written before v2 (card data stays with the payment service now).
    #[serde(default)]
    payment_token: Option<String>, /// The payment method (`pm_…`) the
    /// payment service resolves; from v2.
    #[serde(default)]
    payment_method_id: Option<String> });
payload!(/// `OrderConfirmed` payload.
    OrderConfirmed { /// Order id.
    order_id: String, /// Payment id.
    payment_id: String, /// Total in minor units.
    total: i64, /// ISO 4217 currency.
    currency: String });
payload!(/// `OrderCancelled` payload.
    OrderCancelled { /// Order id.
    order_id: String, /// Human-readable reason.
    reason: String, /// Machine-readable reason.
    reason_code: String, /// Status before cancelling.
    previous_status: String, /// Customer id.
    customer_id: String, /// Customer e-mail.
    email: String });
payload!(/// `OrderShipped` payload.
    OrderShipped { /// Order id.
    order_id: String, /// Carrier tracking number.
    tracking_number: String });
payload!(/// `OrderDelivered` payload.
    OrderDelivered { /// Order id.
    order_id: String, /// Carrier tracking number.
    tracking_number: String });
payload!(/// `InventoryAdjusted` payload.
    InventoryAdjusted { /// SKU.
    sku: String, /// Units available to reserve.
    available: i32, /// Units reserved.
    reserved: i32, /// Catalog price of one unit in minor units (none while unpriced).
    price: Option<i64>, /// ISO 4217 currency of `price`.
    currency: Option<String> });
payload!(/// `InventoryReserved` payload.
    InventoryReserved { /// Order id.
    order_id: String, /// Reserved lines.
    items: Vec<StockLine>, /// Customer id.
    customer_id: String, /// Customer e-mail.
    email: String, /// Total in minor units.
    total: i64, /// ISO 4217 currency.
    currency: String, /// Payment method token: only in events written
    /// before v2.
    #[serde(default)]
    payment_token: Option<String>, /// Where to ship.
    shipping_address: Address, /// The payment method (`pm_…`) the payment
    /// service resolves; from v2.
    #[serde(default)]
    payment_method_id: Option<String> });
payload!(/// `InventoryReservationFailed` payload.
    InventoryReservationFailed { /// Order id.
    order_id: String, /// Why.
    reason: String, /// SKUs that could not be reserved.
    skus: Vec<String> });
payload!(/// `InventoryReleased` payload.
    InventoryReleased { /// Order id.
    order_id: String, /// Released lines.
    items: Vec<StockLine>, /// Why.
    reason: String });
payload!(/// `PaymentProcessed` payload.
    PaymentProcessed { /// Order id.
    order_id: String, /// Payment id.
    payment_id: String, /// Amount in minor units.
    amount: i64, /// ISO 4217 currency.
    currency: String, /// Customer id.
    customer_id: String, /// Customer e-mail.
    email: String, /// Where to ship.
    shipping_address: Address, /// Lines to ship.
    items: Vec<StockLine> });
payload!(/// `PaymentFailed` payload.
    PaymentFailed { /// Order id.
    order_id: String, /// Payment id.
    payment_id: String, /// Amount in minor units.
    amount: i64, /// ISO 4217 currency.
    currency: String, /// Why.
    reason: String, /// Gateway decline code.
    decline_code: String });
payload!(/// `PaymentRefunded` payload.
    PaymentRefunded { /// Order id.
    order_id: String, /// Payment id.
    payment_id: String, /// Amount in minor units.
    amount: i64, /// ISO 4217 currency.
    currency: String, /// Why.
    reason: String });
payload!(/// `ShippingCreated` payload.
    ShippingCreated { /// Order id.
    order_id: String, /// Shipment id.
    shipment_id: String, /// Tracking number.
    tracking_number: String, /// Carrier.
    carrier: String, /// Label URL.
    label_url: String, /// Customer e-mail.
    email: String, /// Recipient name.
    recipient_name: String, /// Lines shipped.
    items: Vec<StockLine> });
payload!(/// `ShippingDispatched` payload.
    ShippingDispatched { /// Order id.
    order_id: String, /// Shipment id.
    shipment_id: String, /// Tracking number.
    tracking_number: String, /// Epoch milliseconds.
    dispatched_at: i64 });
payload!(/// `ShippingDelivered` payload.
    ShippingDelivered { /// Order id.
    order_id: String, /// Shipment id.
    shipment_id: String, /// Tracking number.
    tracking_number: String, /// Epoch milliseconds.
    delivered_at: i64 });
payload!(/// `OrderCancellationRequested` payload.
    OrderCancellationRequested { /// Order id.
    order_id: String, /// Human-readable reason.
    reason: String, /// Machine-readable reason (`CUSTOMER_REQUEST`, `SAGA_TIMEOUT`).
    reason_code: String });
payload!(/// `ShippingCancelled` payload.
    ShippingCancelled { /// Order id.
    order_id: String, /// The cancelled shipment; `None` when none existed.
    shipment_id: Option<String>, /// `reasonCode` of the request.
    reason_code: String });
payload!(/// `ShippingCancellationRejected` payload.
    ShippingCancellationRejected { /// Order id.
    order_id: String, /// Shipment id.
    shipment_id: String, /// Tracking number.
    tracking_number: String, /// `DISPATCHED` or `DELIVERED`.
    shipment_status: String, /// Why (`ALREADY_DISPATCHED`).
    reason_code: String });
payload!(/// `NotificationSent` payload.
    NotificationSent { /// Order id.
    order_id: String, /// Notification id.
    notification_id: String, /// ORDER_CONFIRMATION or ORDER_CANCELLED.
    kind: String, /// Recipient address.
    recipient: String, /// Subject line.
    subject: String });
payload!(/// `NotificationFailed` payload.
    NotificationFailed { /// Order id.
    order_id: String, /// Notification id.
    notification_id: String, /// Notification kind.
    kind: String, /// Recipient address.
    recipient: String, /// Why.
    reason: String });
payload!(/// `AuditRecorded` payload: one action and who took it.
    AuditRecorded { /// What was done, e.g. `stock.adjusted`.
    action: String, /// Who: the token's subject, or the operator named to
    /// `orderctl`.
    actor: String, /// The actor's roles when it acted.
    actor_roles: Vec<String>, /// What was acted on, e.g. `sku:SKU-1`.
    subject: String, /// The order acted on, if one.
    #[serde(default)]
    order_id: Option<String>, /// The events the action produced or sent
    /// again.
    event_ids: Vec<String>, /// Action-specific values.
    #[serde(default)]
    detail: std::collections::BTreeMap<String, String>, /// With action
    /// `events.recorded`: the business events recorded (from v2; empty for
    /// every other action).
    #[serde(default)]
    events: Vec<RecordedEvent> });
payload!(/// A business event as the audit trail keeps it: its envelope
    /// without the payload, and where the log held it.
    RecordedEvent { /// The event's id.
    event_id: String, /// Its type, e.g. `OrderCreated`.
    event_type: String, /// Its payload schema version.
    event_version: i32, /// The service that emitted it.
    source: String, /// Its saga (the order's correlation id).
    correlation_id: String, /// The event that caused it.
    #[serde(default)]
    causation_id: Option<String>, /// When it happened (epoch milliseconds).
    occurred_at: i64, /// The topic it was read from.
    topic: String, /// Its partition.
    partition: i32, /// Its offset.
    offset: i64 });

impl EventType {
    /// The version of this event's payload schema (`eventVersion`): the
    /// number of released versions in `schemas/history/<Event>/`.
    pub fn schema_version(self) -> i32 {
        match self {
            // v2: `paymentToken` optional, `paymentMethodId` added.
            EventType::OrderCreated | EventType::InventoryReserved => 2,
            // v2: `price` and `currency` added.
            EventType::InventoryAdjusted => 2,
            // v2: `events` added (the journal's copies of business events).
            EventType::AuditRecorded => 2,
            _ => 1,
        }
    }
}

macro_rules! events {
    ($($name:ident => $stream:ident),* $(,)?) => {
        /// Every event type of the saga.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $(#[allow(missing_docs)] $name),* }

        /// An event payload, tagged by its type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event { $(#[allow(missing_docs)] $name($name)),* }

        impl EventType {
            /// Every event type.
            pub const ALL: &'static [EventType] = &[$(EventType::$name),*];

            /// The `eventType` string, e.g. `OrderCreated`.
            pub fn name(self) -> &'static str {
                match self { $(EventType::$name => stringify!($name)),* }
            }

            /// The stream (topic) the event is published on.
            pub fn stream(self) -> Stream {
                match self { $(EventType::$name => Stream::$stream),* }
            }

            /// The Avro schema (JSON text) from `schemas/`.
            pub fn schema_json(self) -> &'static str {
                match self {
                    $(EventType::$name => include_str!(concat!("../../../schemas/", stringify!($name), ".avsc"))),*
                }
            }

            /// Looks up an event type by its `eventType` string.
            pub fn from_name(name: &str) -> Option<EventType> {
                match name { $(stringify!($name) => Some(EventType::$name),)* _ => None }
            }
        }

        impl Event {
            /// This event's type.
            pub fn event_type(&self) -> EventType {
                match self { $(Event::$name(_) => EventType::$name),* }
            }

            /// Serialises the payload with `serializer` (Avro or JSON).
            pub(crate) fn serialize_data<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $(Event::$name(d) => d.serialize(serializer)),* }
            }

            /// Builds the payload of `event_type` from a JSON value.
            pub(crate) fn from_json(event_type: EventType, data: serde_json::Value) -> Result<Event, CodecError> {
                Ok(match event_type { $(EventType::$name => Event::$name(serde_json::from_value(data)?)),* })
            }

            /// Builds the payload of `event_type` from a decoded Avro value.
            pub(crate) fn from_avro(event_type: EventType, data: &apache_avro::types::Value) -> Result<Event, CodecError> {
                let avro = |source| CodecError::Avro { context: format!("{} data", event_type.name()), source: Box::new(source) };
                Ok(match event_type { $(EventType::$name => Event::$name(apache_avro::from_value(data).map_err(avro)?)),* })
            }
        }

        $(impl From<$name> for Event {
            fn from(d: $name) -> Event { Event::$name(d) }
        }

        impl Payload for $name {
            const TYPE: EventType = EventType::$name;
            fn from_event(event: &Event) -> Option<&Self> {
                match event { Event::$name(d) => Some(d), _ => None }
            }
        })*
    };
}

events! {
    OrderCreated => Order,
    OrderConfirmed => Order,
    OrderCancelled => Order,
    OrderCancellationRequested => Order,
    OrderShipped => Order,
    OrderDelivered => Order,
    InventoryAdjusted => Inventory,
    InventoryReserved => Inventory,
    InventoryReservationFailed => Inventory,
    InventoryReleased => Inventory,
    PaymentProcessed => Payment,
    PaymentFailed => Payment,
    PaymentRefunded => Payment,
    ShippingCreated => Shipping,
    ShippingDispatched => Shipping,
    ShippingDelivered => Shipping,
    ShippingCancelled => Shipping,
    ShippingCancellationRejected => Shipping,
    NotificationSent => Notification,
    NotificationFailed => Notification,
    AuditRecorded => Audit,
}

/// A typed event payload: lets a handler ask for the payload it expects
/// (`envelope.payload::<OrderCreated>()`).
pub trait Payload: Sized {
    /// The event type this payload belongs to.
    const TYPE: EventType;
    /// The payload when `event` is of this type.
    fn from_event(event: &Event) -> Option<&Self>;
}

impl EventType {
    /// The fully qualified Avro record name, e.g. `com.orderflow.events.OrderCreated`.
    pub fn full_name(self) -> String {
        format!("{SCHEMA_NAMESPACE}.{}", self.name())
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_version_is_the_number_of_released_versions() {
        let history =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/history");
        for t in EventType::ALL {
            let released = std::fs::read_dir(history.join(t.name()))
                .unwrap_or_else(|e| panic!("schemas/history/{}: {e}", t.name()))
                .count();
            assert_eq!(t.schema_version() as usize, released, "{}", t.name());
        }
    }

    #[test]
    fn every_schema_parses_and_names_its_event() {
        for &t in EventType::ALL {
            let schema = apache_avro::Schema::parse_str(t.schema_json())
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            let apache_avro::Schema::Record(r) = &schema else {
                panic!("{t} is not a record")
            };
            assert_eq!(r.name.fullname(None), t.full_name());
            for field in [
                "eventId",
                "eventType",
                "eventVersion",
                "timestamp",
                "source",
                "correlationId",
                "causationId",
                "data",
                "metadata",
            ] {
                assert!(
                    r.lookup.contains_key(field),
                    "{t} lacks envelope field {field}"
                );
            }
            assert_eq!(EventType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn every_schema_file_has_an_event_type() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
        for entry in std::fs::read_dir(dir).expect("schemas dir") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) == Some("avsc") {
                let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
                assert!(
                    EventType::from_name(stem).is_some(),
                    "schemas/{stem}.avsc has no EventType"
                );
            }
        }
    }
}

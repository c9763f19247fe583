//! The envelope every event travels in: identity, causality and context
//! around an [`Event`] payload.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::error::CodecError;
use crate::events::{Event, EventType};

/// One event with its envelope fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id of this event.
    pub event_id: Uuid,
    /// Version of the payload schema.
    pub event_version: i32,
    /// When it happened (UTC, millisecond precision).
    pub timestamp: DateTime<Utc>,
    /// The emitting service, e.g. `order-service`.
    pub source: String,
    /// The saga id, shared by every event of one order.
    pub correlation_id: String,
    /// The event that caused this one; `None` for the first of a saga.
    pub causation_id: Option<Uuid>,
    /// The payload.
    pub event: Event,
    /// Free-form context such as `userId` or `sessionId`.
    pub metadata: BTreeMap<String, String>,
}

impl Envelope {
    /// The first event of a saga: no cause.
    pub fn new(source: &str, correlation_id: impl Into<String>, event: impl Into<Event>) -> Self {
        let event = event.into();
        Self {
            event_id: Uuid::now_v7(),
            event_version: event.event_type().schema_version(),
            timestamp: Utc::now().trunc_subsecs(3),
            source: source.to_owned(),
            correlation_id: correlation_id.into(),
            causation_id: None,
            event,
            metadata: BTreeMap::new(),
        }
    }

    /// An event caused by `cause`: same correlation id and metadata,
    /// `causation_id` = `cause.event_id`.
    pub fn caused_by(cause: &Envelope, source: &str, event: impl Into<Event>) -> Self {
        Self {
            causation_id: Some(cause.event_id),
            metadata: cause.metadata.clone(),
            ..Self::new(source, cause.correlation_id.clone(), event)
        }
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: &str, value: impl Into<String>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }

    /// The payload as type `P`; a permanent handler error (the event goes to
    /// the dead-letter topic) when the event is of another type.
    pub fn payload<P: crate::events::Payload>(&self) -> Result<&P, crate::error::HandlerError> {
        P::from_event(&self.event).ok_or_else(|| {
            crate::error::HandlerError::permanent(format!(
                "expected {} but got {}",
                P::TYPE.name(),
                self.event_type().name()
            ))
        })
    }

    /// This event's type.
    pub fn event_type(&self) -> EventType {
        self.event.event_type()
    }

    /// The envelope as JSON (the outbox's storage format), `data` holding the
    /// payload.
    pub fn to_json(&self) -> Result<serde_json::Value, CodecError> {
        Ok(serde_json::to_value(Wire(self))?)
    }

    /// Parses the JSON written by [`Envelope::to_json`].
    pub fn from_json(value: serde_json::Value) -> Result<Self, CodecError> {
        let raw: RawEnvelope<serde_json::Value> = serde_json::from_value(value)?;
        let event_type = EventType::from_name(&raw.event_type)
            .ok_or_else(|| CodecError::UnknownEventType(raw.event_type.clone()))?;
        let event = Event::from_json(event_type, raw.data.clone())?;
        raw.into_envelope(event)
    }
}

/// Serialises an envelope in the shape of the Avro schemas (camelCase,
/// timestamp as epoch milliseconds, ids as strings).
pub(crate) struct Wire<'a>(pub &'a Envelope);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Data<'a>(&'a Event);
        impl Serialize for Data<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_data(s)
            }
        }
        let e = self.0;
        let mut st = serializer.serialize_struct(e.event_type().name(), 9)?;
        st.serialize_field("eventId", &e.event_id.hyphenated().to_string())?;
        st.serialize_field("eventType", e.event_type().name())?;
        st.serialize_field("eventVersion", &e.event_version)?;
        st.serialize_field("timestamp", &e.timestamp.timestamp_millis())?;
        st.serialize_field("source", &e.source)?;
        st.serialize_field("correlationId", &e.correlation_id)?;
        st.serialize_field(
            "causationId",
            &e.causation_id.map(|c| c.hyphenated().to_string()),
        )?;
        st.serialize_field("data", &Data(&e.event))?;
        st.serialize_field("metadata", &e.metadata)?;
        st.end()
    }
}

/// The envelope fields as they come off the wire, before validation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEnvelope<D> {
    pub event_id: String,
    pub event_type: String,
    pub event_version: i32,
    pub timestamp: i64,
    pub source: String,
    pub correlation_id: String,
    #[serde(default)]
    pub causation_id: Option<String>,
    pub data: D,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl<D> RawEnvelope<D> {
    pub(crate) fn into_envelope(self, event: Event) -> Result<Envelope, CodecError> {
        if self.event_type != event.event_type().name() {
            return Err(CodecError::InvalidEnvelope(format!(
                "eventType {:?} does not match record type {}",
                self.event_type,
                event.event_type()
            )));
        }
        let event_id = parse_uuid("eventId", &self.event_id)?;
        let causation_id = match self.causation_id.as_deref() {
            None | Some("") => None,
            Some(c) => Some(parse_uuid("causationId", c)?),
        };
        let timestamp = Utc
            .timestamp_millis_opt(self.timestamp)
            .single()
            .ok_or_else(|| {
                CodecError::InvalidEnvelope(format!("timestamp {} out of range", self.timestamp))
            })?;
        Ok(Envelope {
            event_id,
            event_version: self.event_version,
            timestamp,
            source: self.source,
            correlation_id: self.correlation_id,
            causation_id,
            event,
            metadata: self.metadata,
        })
    }
}

fn parse_uuid(field: &str, s: &str) -> Result<Uuid, CodecError> {
    Uuid::parse_str(s)
        .map_err(|e| CodecError::InvalidEnvelope(format!("{field} {s:?} is not a UUID: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderShipped;

    #[test]
    fn json_round_trip_and_causality() {
        let first = Envelope::new(
            "order-service",
            "saga-1",
            OrderShipped {
                order_id: "o-1".into(),
                tracking_number: "T1".into(),
            },
        )
        .with_metadata("userId", "u-1");
        let next = Envelope::caused_by(&first, "shipping-service", first.event.clone());
        assert_eq!(next.causation_id, Some(first.event_id));
        assert_eq!(next.correlation_id, "saga-1");
        assert_eq!(next.metadata.get("userId").map(String::as_str), Some("u-1"));
        let json = next.to_json().expect("json");
        assert_eq!(json["eventType"], "OrderShipped");
        assert_eq!(json["data"]["trackingNumber"], "T1");
        assert_eq!(Envelope::from_json(json).expect("parse"), next);
    }

    #[test]
    fn json_with_mismatched_type_is_rejected() {
        let e = Envelope::new(
            "x",
            "c",
            OrderShipped {
                order_id: "o".into(),
                tracking_number: "t".into(),
            },
        );
        let mut json = e.to_json().expect("json");
        json["eventId"] = "not-a-uuid".into();
        assert!(matches!(
            Envelope::from_json(json),
            Err(CodecError::InvalidEnvelope(_))
        ));
    }
}

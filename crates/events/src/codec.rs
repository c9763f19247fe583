//! Avro encoding in Confluent wire format: magic byte `0`, the schema id as
//! a 4-byte big-endian integer, then the Avro binary body.
//!
//! Our own schemas are parsed once when the codec is built. Schema ids are
//! looked up (or registered) once per (topic, event type) and writer schemas
//! fetched once per id; all of it is cached. When the writer schema of a
//! record is exactly ours, decoding skips schema resolution, which is the
//! expensive part of apache-avro's reader.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::envelope::{Envelope, RawEnvelope, Wire};
use crate::error::CodecError;
use crate::events::{Event, EventType, SCHEMA_NAMESPACE};
use crate::registry::{subject_name, RegistryClient};

/// The first byte of every Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;

struct OwnSchema {
    schema: Schema,
    canonical: String,
}

struct WriterSchema {
    schema: Schema,
    event_type: EventType,
    /// False when the writer schema is identical to ours.
    needs_resolution: bool,
}

/// Encodes and decodes envelopes, backed by a schema registry.
pub struct AvroCodec {
    registry: RegistryClient,
    auto_register: bool,
    own: HashMap<EventType, OwnSchema>,
    ids: RwLock<HashMap<(String, EventType), u32>>,
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
}

impl std::fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroCodec")
            .field("registry", &self.registry.base_url())
            .field("auto_register", &self.auto_register)
            .finish_non_exhaustive()
    }
}

impl AvroCodec {
    /// Builds a codec. With `auto_register` the producer registers its schema
    /// on first use (handy locally); without it the schema must already be
    /// registered (`orderctl schemas register`), as in production.
    pub fn new(registry: RegistryClient, auto_register: bool) -> Result<Self, CodecError> {
        let mut own = HashMap::new();
        for &t in EventType::ALL {
            let schema = Schema::parse_str(t.schema_json()).map_err(|e| CodecError::Schema {
                context: format!("schemas/{t}.avsc"),
                source: Box::new(e),
            })?;
            let canonical = schema.canonical_form();
            own.insert(t, OwnSchema { schema, canonical });
        }
        Ok(Self {
            registry,
            auto_register,
            own,
            ids: RwLock::default(),
            writers: RwLock::default(),
        })
    }

    /// The registry client.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    fn own(&self, t: EventType) -> &OwnSchema {
        self.own.get(&t).expect("every event type has a schema")
    }

    /// The schema id for events of type `t` on `topic` (cached).
    pub async fn schema_id(&self, topic: &str, t: EventType) -> Result<u32, CodecError> {
        let key = (topic.to_owned(), t);
        if let Some(id) = read(&self.ids).get(&key) {
            return Ok(*id);
        }
        let subject = subject_name(topic, &t.full_name());
        let id = if self.auto_register {
            self.registry.register(&subject, t.schema_json()).await?
        } else {
            self.registry
                .lookup(&subject, t.schema_json())
                .await?
                .map(|v| v.id)
                .ok_or_else(|| {
                    CodecError::Registry(crate::error::RegistryError::Unavailable {
                        url: self.registry.base_url().to_owned(),
                        message: format!("schema for subject {subject} is not registered yet"),
                    })
                })?
        };
        write(&self.ids).insert(key, id);
        Ok(id)
    }

    /// Encodes `envelope` for `topic` in Confluent wire format.
    pub async fn encode(&self, topic: &str, envelope: &Envelope) -> Result<Vec<u8>, CodecError> {
        let t = envelope.event_type();
        let id = self.schema_id(topic, t).await?;
        let mut buf = Vec::with_capacity(256);
        buf.push(MAGIC_BYTE);
        buf.extend_from_slice(&id.to_be_bytes());
        apache_avro::write_avro_datum_ref(&self.own(t).schema, &Wire(envelope), &mut buf).map_err(
            |e| CodecError::Avro {
                context: format!("encoding {t}"),
                source: Box::new(e),
            },
        )?;
        Ok(buf)
    }

    /// Splits a Confluent-framed record into schema id and body.
    pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
        match bytes {
            [] => Err(CodecError::NotWireFormat("empty payload".into())),
            [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
            [MAGIC_BYTE, ..] => Err(CodecError::NotWireFormat(format!(
                "only {} bytes",
                bytes.len()
            ))),
            [m, ..] => Err(CodecError::NotWireFormat(format!(
                "magic byte {m}, expected 0"
            ))),
        }
    }

    /// Decodes a Confluent-framed record into an envelope.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Envelope, CodecError> {
        let (id, mut body) = Self::split_frame(bytes)?;
        let writer = self.writer(id).await?;
        let reader = writer
            .needs_resolution
            .then(|| &self.own(writer.event_type).schema);
        let value =
            apache_avro::from_avro_datum(&writer.schema, &mut body, reader).map_err(|e| {
                CodecError::Avro {
                    context: format!("decoding {} with schema id {id}", writer.event_type),
                    source: Box::new(e),
                }
            })?;
        if !body.is_empty() {
            return Err(CodecError::NotWireFormat(format!(
                "{} trailing bytes after the Avro body",
                body.len()
            )));
        }
        envelope_from_value(writer.event_type, value)
    }

    async fn writer(&self, id: u32) -> Result<Arc<WriterSchema>, CodecError> {
        if let Some(w) = read(&self.writers).get(&id) {
            return Ok(w.clone());
        }
        let text = self
            .registry
            .schema_by_id(id)
            .await?
            .ok_or(CodecError::UnknownSchemaId(id))?;
        let schema = Schema::parse_str(&text).map_err(|e| CodecError::Schema {
            context: format!("registry schema id {id}"),
            source: Box::new(e),
        })?;
        let name = match &schema {
            Schema::Record(r) => r.name.fullname(None),
            other => {
                return Err(CodecError::UnknownEventType(format!(
                    "non-record schema {other:?}"
                )))
            }
        };
        let event_type = name
            .strip_prefix(SCHEMA_NAMESPACE)
            .and_then(|n| n.strip_prefix('.'))
            .and_then(EventType::from_name)
            .ok_or_else(|| CodecError::UnknownEventType(name.clone()))?;
        let needs_resolution = schema.canonical_form() != self.own(event_type).canonical;
        let writer = Arc::new(WriterSchema {
            schema,
            event_type,
            needs_resolution,
        });
        write(&self.writers).insert(id, writer.clone());
        Ok(writer)
    }
}

fn envelope_from_value(t: EventType, value: Value) -> Result<Envelope, CodecError> {
    let Value::Record(mut fields) = value else {
        return Err(CodecError::InvalidEnvelope(format!("{t} is not a record")));
    };
    let data_pos = fields
        .iter()
        .position(|(name, _)| name == "data")
        .ok_or_else(|| CodecError::InvalidEnvelope("no data field".into()))?;
    let data = std::mem::replace(&mut fields[data_pos].1, Value::Null);
    let avro = |source| CodecError::Avro {
        context: format!("{t} envelope"),
        source: Box::new(source),
    };
    let raw: RawEnvelope<()> = apache_avro::from_value(&Value::Record(fields)).map_err(avro)?;
    let event = Event::from_avro(t, &data)?;
    raw.into_envelope(event)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked() {
        assert!(matches!(
            AvroCodec::split_frame(&[]),
            Err(CodecError::NotWireFormat(_))
        ));
        assert!(matches!(
            AvroCodec::split_frame(&[1, 0, 0, 0, 1, 2]),
            Err(CodecError::NotWireFormat(_))
        ));
        assert!(matches!(
            AvroCodec::split_frame(&[0, 0, 1]),
            Err(CodecError::NotWireFormat(_))
        ));
        let (id, body) = AvroCodec::split_frame(&[0, 0, 0, 1, 2, 9]).expect("frame");
        assert_eq!((id, body), (258, &[9u8][..]));
    }
}

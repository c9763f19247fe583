//! Avro in Confluent wire format (magic byte `0`, the schema id as a 4-byte
//! big-endian integer, the Avro binary body), with `schema_registry_converter`
//! for the registry: its decoder fetches each writer schema once by id and
//! keeps it (concurrent first reads share one request), its encoder
//! registers our schema once per subject.
//!
//! Our own schemas are parsed, and their names resolved, once per process
//! (they are compiled in). A record whose writer schema is exactly ours is
//! read with that; one written with another version (an older release, a
//! newer producer) is resolved to ours, as Avro's schema resolution
//! prescribes.
//!
//! What stays here, and why:
//! - the frame and body checks: a dead letter says whether the frame, the
//!   schema id or the body was wrong, and bytes left after the body are an
//!   error (the converter's decoder ignores them);
//! - looking up the id of exactly our schema without registering it
//!   (`auto_register` off, as in production), which the converter does not
//!   offer: its `TopicRecordNameStrategy` takes the subject's *latest*
//!   version, which would label our records with another version's id;
//! - writing and reading the body with names resolved once per process
//!   instead of per record (measured: docs/benchmarks.md, "The codec on
//!   schema_registry_converter").

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::AvroSchema;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    RawError, SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::envelope::{Envelope, RawEnvelope, Wire};
use crate::error::{CodecError, RegistryError};
use crate::events::{Event, EventType, SCHEMA_NAMESPACE};
use crate::registry::{subject_name, RegistryClient};

/// The first byte of every Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;

/// One of our schemas, parsed once per process.
struct OwnSchema {
    schema: Schema,
    canonical: String,
}

static OWN: LazyLock<HashMap<EventType, OwnSchema>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|&t| {
            // `every_schema_parses_and_names_its_event` checks each one.
            let schema = Schema::parse_str(t.schema_json())
                .unwrap_or_else(|e| panic!("schemas/{t}.avsc does not parse: {e}"));
            let canonical = schema.canonical_form();
            (t, OwnSchema { schema, canonical })
        })
        .collect()
});

/// The named types of each of our schemas, resolved once.
static OWN_NAMES: LazyLock<HashMap<EventType, ResolvedSchema<'static>>> = LazyLock::new(|| {
    OWN.iter()
        .map(|(&t, own)| {
            let resolved = ResolvedSchema::try_from(&own.schema)
                .unwrap_or_else(|e| panic!("schemas/{t}.avsc does not resolve: {e}"));
            (t, resolved)
        })
        .collect()
});

fn own(t: EventType) -> &'static OwnSchema {
    OWN.get(&t).expect("every event type has a schema")
}

/// A reader of each of our schemas, its names resolved once.
static OWN_READERS: LazyLock<HashMap<EventType, GenericDatumReader<'static>>> =
    LazyLock::new(|| {
        OWN.iter()
            .map(|(&t, own)| {
                let reader = GenericDatumReader::builder(&own.schema)
                    .build()
                    .unwrap_or_else(|e| panic!("schemas/{t}.avsc does not resolve: {e}"));
                (t, reader)
            })
            .collect()
    });

/// How records written with one schema id are read.
#[derive(Clone)]
struct Reading {
    event_type: EventType,
    /// The writer schema when it is not ours (`None`: it is ours).
    writer: Option<Arc<AvroSchema>>,
}

/// Encodes and decodes envelopes, backed by a schema registry.
pub struct AvroCodec {
    registry: RegistryClient,
    auto_register: bool,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    ids: RwLock<HashMap<(String, EventType), u32>>,
    readings: RwLock<HashMap<u32, Reading>>,
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
        LazyLock::force(&OWN_NAMES);
        LazyLock::force(&OWN_READERS);
        let settings = sr_settings(&registry)?;
        Ok(Self {
            encoder: AvroEncoder::new(settings.clone()),
            decoder: AvroDecoder::new(settings),
            registry,
            auto_register,
            ids: RwLock::default(),
            readings: RwLock::default(),
        })
    }

    /// The registry client.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// The schema id for events of type `t` on `topic` (cached).
    pub async fn schema_id(&self, topic: &str, t: EventType) -> Result<u32, CodecError> {
        let key = (topic.to_owned(), t);
        if let Some(id) = read(&self.ids).get(&key) {
            return Ok(*id);
        }
        let subject = subject_name(topic, &t.full_name());
        let id = if self.auto_register {
            let ours = SuppliedSchema::new(
                Some(t.full_name()),
                SchemaType::Avro,
                t.schema_json().to_owned(),
            );
            let strategy =
                SubjectNameStrategy::TopicRecordNameStrategyWithSchema(topic.to_owned(), ours);
            match self.encoder.get_schema_and_id(&subject, strategy).await {
                Ok(registered) => registered.id,
                Err(e) => {
                    // Not kept: a registration refused now (an incompatible
                    // change, a missing permission) may pass once an
                    // operator has acted.
                    self.encoder.remove_errors_from_cache();
                    return Err(self.registry_error(e, None));
                }
            }
        } else {
            self.registry
                .lookup(&subject, t.schema_json())
                .await?
                .map(|v| v.id)
                .ok_or_else(|| {
                    CodecError::Registry(RegistryError::Unavailable {
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
        let names = OWN_NAMES.get(&t).expect("every event type has a schema");
        apache_avro::write_avro_datum_ref(
            &own(t).schema,
            names.get_names(),
            &Wire(envelope),
            &mut buf,
        )
        .map_err(|e| CodecError::Avro {
            context: format!("encoding {t}"),
            source: Box::new(e),
        })?;
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
        let (id, body) = Self::split_frame(bytes)?;
        let reading = self.reading(id).await?;
        let t = reading.event_type;
        let mut cursor = std::io::Cursor::new(body);
        let value = match &reading.writer {
            None => OWN_READERS
                .get(&t)
                .expect("every event type has a schema")
                .read_value(&mut cursor),
            // Another version: resolved to ours as Avro prescribes. Rare
            // (while producers roll out a change), so its names are
            // resolved per record rather than kept.
            Some(writer) => GenericDatumReader::builder(&writer.parsed)
                .reader_schema(&own(t).schema)
                .build()
                .and_then(|r| r.read_value(&mut cursor)),
        }
        .map_err(|e| CodecError::Avro {
            context: format!("decoding {t} with schema id {id}"),
            source: Box::new(e),
        })?;
        let rest = body.len() as u64 - cursor.position();
        if rest != 0 {
            return Err(CodecError::NotWireFormat(format!(
                "{rest} trailing bytes after the Avro body"
            )));
        }
        envelope_from_value(t, value)
    }

    /// Which event schema id `id` is, and whether it is ours: the
    /// converter fetches (and keeps) the writer schema once.
    async fn reading(&self, id: u32) -> Result<Reading, CodecError> {
        if let Some(r) = read(&self.readings).get(&id) {
            return Ok(r.clone());
        }
        // Confluent schema ids are Java ints: a larger one was never issued
        // (the registry's route does not even match it).
        if i32::try_from(id).is_err() {
            return Err(CodecError::UnknownSchemaId(id));
        }
        let writer = match self.decoder.get_schema(id).await {
            Ok(writer) => writer,
            Err(e) => {
                // Not kept: an id unknown now may be known once the
                // registry (or the replica answering) has caught up.
                self.decoder.remove_errors_from_cache();
                return Err(self.registry_error(e, Some(id)));
            }
        };
        let name = match &writer.parsed {
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
        let same = writer.parsed.canonical_form() == own(event_type).canonical;
        let reading = Reading {
            event_type,
            writer: (!same).then_some(writer),
        };
        write(&self.readings).insert(id, reading.clone());
        Ok(reading)
    }

    /// What a failed registry call means for the caller: worth retrying
    /// (unreachable, 5xx, 429), an unknown schema id, or refused.
    fn registry_error(&self, e: SRCError, id: Option<u32>) -> CodecError {
        let url = self.registry.base_url().to_owned();
        if e.retriable {
            return RegistryError::Unavailable {
                url,
                message: e.to_string(),
            }
            .into();
        }
        let Some(raw) = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<RawError>())
        else {
            // Not an answer of the registry: its schema did not parse.
            return CodecError::Schema {
                context: id.map_or_else(
                    || "registered".to_owned(),
                    |id| format!("registry schema id {id}"),
                ),
                source: Box::new(e),
            };
        };
        match (id, raw.error_code) {
            (Some(id), 40403) => CodecError::UnknownSchemaId(id),
            (_, code) => RegistryError::Rejected {
                url,
                // Confluent error codes start with the HTTP status.
                status: u16::try_from(code / 100).unwrap_or_default(),
                error_code: i64::from(code),
                message: raw.message.clone(),
            }
            .into(),
        }
    }
}

/// The converter's registry settings for `registry`: its address and user,
/// timeouts, TLS with the system's roots, and 5xx/429 answers made
/// retryable (the converter retries only 502/503 and keeps every other
/// failure cached until told otherwise).
fn sr_settings(registry: &RegistryClient) -> Result<SrSettings, CodecError> {
    let mut builder = SrSettings::new_builder(registry.base_url().to_owned());
    if let Some((user, password)) = registry.credentials() {
        builder.set_basic_authorization(user, Some(password));
    }
    builder
        .set_timeout(Duration::from_secs(10))
        .with_middleware(transient::Statuses);
    let client = reqwest_sr::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .tls_backend_preconfigured(transient::tls_config().clone());
    builder.build_with(client).map_err(|e| {
        RegistryError::Unavailable {
            url: registry.base_url().to_owned(),
            message: e.to_string(),
        }
        .into()
    })
}

mod transient {
    //! The converter's HTTP client: which answers are worth retrying, and TLS.

    use std::sync::{Arc, LazyLock};

    use reqwest_middleware::{Middleware, Next};
    use reqwest_sr::{Request, Response, StatusCode};

    /// Turns a 5xx or 429 answer into a failed call, which the converter
    /// reports as retryable and does not cache.
    pub(super) struct Statuses;

    #[async_trait::async_trait]
    impl Middleware for Statuses {
        async fn handle(
            &self,
            req: Request,
            extensions: &mut http::Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<Response> {
            let response = next.run(req, extensions).await?;
            let status = response.status();
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                let url = response.url().clone();
                let body = response.text().await.unwrap_or_default();
                return Err(reqwest_middleware::Error::Middleware(anyhow::anyhow!(
                    "HTTP {status} from {url}: {body}"
                )));
            }
            Ok(response)
        }
    }

    /// rustls on ring with the system's roots, as the workspace's other
    /// clients; loaded once per process.
    pub(super) fn tls_config() -> &'static rustls::ClientConfig {
        static CONFIG: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A certificate the store refuses is one it could not use.
                let _ = roots.add(cert);
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
        });
        &CONFIG
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

    /// A registry stand-in on a local port that gives `answers` (status,
    /// body) to successive requests, one connection each.
    async fn registry_answering(answers: Vec<(u16, String)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "request ended early");
                    request.extend_from_slice(&chunk[..n]);
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.schemaregistry.v1+json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(response.as_bytes()).await.expect("write");
            }
        });
        url
    }

    #[tokio::test]
    async fn a_registry_error_5xx_or_429_is_retried_not_kept() {
        let schema = serde_json::json!({ "schema": EventType::OrderShipped.schema_json() });
        let url = registry_answering(vec![
            (
                500,
                r#"{"error_code":50001,"message":"store down"}"#.to_owned(),
            ),
            (
                429,
                r#"{"error_code":429,"message":"slow down"}"#.to_owned(),
            ),
            (200, schema.to_string()),
        ])
        .await;
        let codec = AvroCodec::new(RegistryClient::new(&url).expect("URL"), false).expect("codec");
        let envelope = Envelope::new(
            "shipping-service",
            "o-1",
            crate::events::OrderShipped {
                order_id: "o-1".into(),
                tracking_number: "T-1".into(),
            },
        );
        let mut bytes = vec![MAGIC_BYTE, 0, 0, 0, 7];
        let t = EventType::OrderShipped;
        apache_avro::write_avro_datum_ref(
            &own(t).schema,
            OWN_NAMES[&t].get_names(),
            &Wire(&envelope),
            &mut bytes,
        )
        .expect("encode");
        for status in ["500", "429"] {
            let e = codec.decode(&bytes).await.expect_err("registry failing");
            assert!(e.is_transient(), "HTTP {status}: {e}");
            assert!(e.to_string().contains(status), "{e}");
        }
        let decoded = codec
            .decode(&bytes)
            .await
            .expect("the registry answers now");
        assert_eq!(decoded, envelope);
    }

    #[tokio::test]
    async fn an_unknown_schema_id_is_refused_and_asked_again_next_time() {
        let schema = serde_json::json!({ "schema": EventType::OrderShipped.schema_json() });
        let url = registry_answering(vec![
            (
                404,
                r#"{"error_code":40403,"message":"Schema 7 not found"}"#.to_owned(),
            ),
            (200, schema.to_string()),
        ])
        .await;
        let codec = AvroCodec::new(RegistryClient::new(&url).expect("URL"), false).expect("codec");
        let e = codec
            .decode(&[MAGIC_BYTE, 0, 0, 0, 7, 1])
            .await
            .expect_err("unknown");
        assert!(matches!(e, CodecError::UnknownSchemaId(7)), "{e}");
        assert!(!e.is_transient());
        // Registered since (or the replica caught up): found now. The body
        // is not an OrderShipped, so it fails there, not on the id.
        let e = codec
            .decode(&[MAGIC_BYTE, 0, 0, 0, 7, 1])
            .await
            .expect_err("not a valid body");
        assert_eq!(e.reason(), "undecodable", "{e}");
    }
}

//! The codec against the real schema registry: records written with another
//! version of a schema (an older release, a newer producer) decode into
//! today's types, and records that are not what their frame claims are
//! refused with a reason a dead letter can carry.

use apache_avro::types::Value;
use apache_avro::Schema;
use orderflow_events::codec::AvroCodec;
use orderflow_events::error::CodecError;
use orderflow_events::events::{Address, OrderCreated, OrderLine};
use orderflow_events::registry::{subject_name, RegistryClient};
use orderflow_events::testing::registry_url;
use orderflow_events::{Envelope, EventType};
use serde_json::json;

fn schemas_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn admin() -> RegistryClient {
    RegistryClient::new(&registry_url()).expect("registry URL")
}

fn codec() -> AvroCodec {
    AvroCodec::new(admin(), true).expect("codec")
}

fn topic() -> String {
    format!("codec-{}", uuid::Uuid::new_v4().simple())
}

fn created(payment_method_id: Option<&str>) -> Envelope {
    Envelope::new(
        "order-service",
        "order-codec-1",
        OrderCreated {
            order_id: "order-codec-1".into(),
            customer_id: "c-1".into(),
            email: "c1@example.com".into(),
            currency: "EUR".into(),
            items: vec![OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: 1250,
            }],
            total: 2500,
            shipping_address: Address {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            payment_token: None,
            payment_method_id: payment_method_id.map(str::to_owned),
        },
    )
    .with_metadata("userId", "u-1")
}

/// `json` (shaped like [`Envelope::to_json`]) written with `schema` under
/// schema id `id`, in Confluent wire format.
fn framed(schema: &Schema, id: u32, json: serde_json::Value) -> Vec<u8> {
    let value = Value::try_from(json)
        .expect("JSON fits Avro")
        .resolve(schema)
        .expect("the sample fits the schema");
    #[allow(deprecated)]
    let body = apache_avro::to_avro_datum(schema, value).expect("encode");
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn a_record_written_with_the_first_release_decodes_into_todays_types() {
    // v1 of OrderCreated carried the card token as a plain string and had
    // no payment method id; today both are optional.
    let v1_text = std::fs::read_to_string(schemas_dir().join("history/OrderCreated/v1.avsc"))
        .expect("schemas/history/OrderCreated/v1.avsc");
    let v1 = Schema::parse_str(&v1_text).expect("v1 parses");
    let topic = topic();
    let subject = subject_name(&topic, &EventType::OrderCreated.full_name());
    let id = admin()
        .register(&subject, &v1_text)
        .await
        .expect("register v1");

    let today = created(None);
    let mut json = today.to_json().expect("json");
    json["data"]["paymentToken"] = json!("tok_visa");
    json["data"]
        .as_object_mut()
        .expect("data")
        .remove("paymentMethodId");
    json["eventVersion"] = json!(1);

    let decoded = codec()
        .decode(&framed(&v1, id, json))
        .await
        .expect("a v1 record decodes");
    let mut expected = today;
    expected.event_version = 1;
    let orderflow_events::Event::OrderCreated(data) = &mut expected.event else {
        unreachable!("built as OrderCreated")
    };
    data.payment_token = Some("tok_visa".into());
    assert_eq!(decoded, expected, "every field, the token from v1");
}

#[tokio::test]
async fn a_record_from_a_newer_producer_decodes_with_its_new_field_ignored() {
    let mut newer: serde_json::Value =
        serde_json::from_str(EventType::OrderCreated.schema_json()).expect("json");
    let data_fields = newer["fields"]
        .as_array_mut()
        .expect("fields")
        .iter_mut()
        .find(|f| f["name"] == "data")
        .expect("data")["type"]["fields"]
        .as_array_mut()
        .expect("data fields");
    data_fields.push(json!({"name": "giftWrap", "type": "boolean", "default": false}));
    let newer_text = newer.to_string();
    let newer_schema = Schema::parse_str(&newer_text).expect("parses");
    let topic = topic();
    let subject = subject_name(&topic, &EventType::OrderCreated.full_name());
    let codec = codec();
    // Today's schema first (as the running producers register it), then
    // the newer one as its next, compatible version.
    let sent = created(Some("pm_1"));
    let today_bytes = codec.encode(&topic, &sent).await.expect("encode");
    let newer_id = admin()
        .register(&subject, &newer_text)
        .await
        .expect("a compatible next version");
    let (today_id, _) = AvroCodec::split_frame(&today_bytes).expect("frame");
    assert_ne!(newer_id, today_id);

    let mut json = sent.to_json().expect("json");
    json["data"]["giftWrap"] = json!(true);
    let decoded = codec
        .decode(&framed(&newer_schema, newer_id, json))
        .await
        .expect("a newer record decodes");
    assert_eq!(decoded, sent);
    assert_eq!(codec.decode(&today_bytes).await.expect("today's"), sent);
}

#[tokio::test]
async fn records_that_are_not_what_their_frame_says_are_refused() {
    let codec = codec();
    let topic = topic();
    let sent = created(Some("pm_1"));
    let bytes = codec.encode(&topic, &sent).await.expect("encode");
    assert_eq!(codec.decode(&bytes).await.expect("decodes"), sent);

    let mut trailing = bytes.clone();
    trailing.push(7);
    let e = codec.decode(&trailing).await.expect_err("trailing bytes");
    assert_eq!(e.reason(), "not-wire-format", "{e}");

    let truncated = &bytes[..bytes.len() - 3];
    let e = codec.decode(truncated).await.expect_err("truncated body");
    assert_eq!(e.reason(), "undecodable", "{e}");
    assert!(!e.is_transient());

    let mut unknown = vec![0];
    unknown.extend_from_slice(&2_000_000_000u32.to_be_bytes());
    unknown.extend_from_slice(&bytes[5..]);
    let e = codec.decode(&unknown).await.expect_err("unknown id");
    assert!(
        matches!(e, CodecError::UnknownSchemaId(2_000_000_000)),
        "{e}"
    );
    assert!(!e.is_transient());
    // Beyond the registry's ids (Java ints): unknown without asking.
    unknown[1..5].copy_from_slice(&(u32::MAX - 7).to_be_bytes());
    let e = codec.decode(&unknown).await.expect_err("impossible id");
    assert!(
        matches!(e, CodecError::UnknownSchemaId(4_294_967_288)),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_a_transient_error() {
    // Nothing listens on port 9 (discard) of this machine.
    let down = RegistryClient::new("http://127.0.0.1:9").expect("URL");
    let codec = AvroCodec::new(down, false).expect("codec");
    let e = codec
        .decode(&[0, 0, 0, 0, 1, 2])
        .await
        .expect_err("no registry");
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.reason(), "registry-error");
    let e = codec
        .encode("codec-down", &created(None))
        .await
        .expect_err("no registry");
    assert!(e.is_transient(), "{e}");
}

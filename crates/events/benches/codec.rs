//! What the codec costs per record, on one core: encoding an `OrderCreated`
//! (the largest saga event) in Confluent wire format, decoding it when the
//! writer schema is the reader's own, and decoding one written with an
//! older release of the schema (resolved to today's).
//!
//! Needs a schema registry (`SCHEMA_REGISTRY_URL`, as the tests);
//! `scripts/bench-events --bench codec` starts one. Schemas are looked up
//! once and cached, so the registry is not part of the figures.
//! `BENCH_RECORDS` (default 200 000) sets the records per measurement.

#![allow(missing_docs)]

use std::time::Instant;

use apache_avro::types::Value;
use apache_avro::Schema;
use orderflow_events::codec::AvroCodec;
use orderflow_events::events::{Address, OrderCreated, OrderLine};
use orderflow_events::registry::{subject_name, RegistryClient};
use orderflow_events::testing;
use orderflow_events::{Envelope, EventType};

fn main() {
    let records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(records));
}

async fn run(records: usize) {
    let registry = || RegistryClient::new(&testing::registry_url()).expect("registry URL");
    let codec = AvroCodec::new(registry(), true).expect("codec");
    let topic = format!("bench-codec-{}", uuid::Uuid::new_v4().simple());
    let envelope = sample();

    // An OrderCreated as the first release wrote it.
    let v1_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/history/OrderCreated/v1.avsc"
    ))
    .expect("v1 schema");
    let v1 = Schema::parse_str(&v1_text).expect("v1 parses");
    let old_topic = format!("{topic}-v1");
    let v1_id = registry()
        .register(
            &subject_name(&old_topic, &EventType::OrderCreated.full_name()),
            &v1_text,
        )
        .await
        .expect("register v1");
    let mut json = envelope.to_json().expect("json");
    json["data"]["paymentToken"] = "tok_visa".into();
    json["data"]
        .as_object_mut()
        .expect("data")
        .remove("paymentMethodId");
    let value = Value::try_from(json)
        .expect("JSON fits Avro")
        .resolve(&v1)
        .expect("v1 sample");
    #[allow(deprecated)]
    let body = apache_avro::to_avro_datum(&v1, value).expect("v1 body");
    let mut old = vec![0];
    old.extend_from_slice(&v1_id.to_be_bytes());
    old.extend_from_slice(&body);

    let bytes = codec.encode(&topic, &envelope).await.expect("encode");
    assert_eq!(codec.decode(&bytes).await.expect("decode"), envelope);
    codec.decode(&old).await.expect("decode v1");
    println!(
        "codec: OrderCreated, {} bytes on the wire ({} as v1), {records} records per line",
        bytes.len(),
        old.len()
    );

    let started = Instant::now();
    let mut total = 0usize;
    for _ in 0..records {
        total += codec.encode(&topic, &envelope).await.expect("encode").len();
    }
    report("encode", records, started);
    assert_eq!(total, records * bytes.len());

    let started = Instant::now();
    for _ in 0..records {
        std::hint::black_box(codec.decode(&bytes).await.expect("decode"));
    }
    report("decode, same schema", records, started);

    let started = Instant::now();
    for _ in 0..records {
        std::hint::black_box(codec.decode(&old).await.expect("decode v1"));
    }
    report("decode, v1 writer", records, started);

    // For comparison, the converter's own decoder: the same record to an
    // Avro value in its writer schema (no envelope built from it).
    let converter = converter_decoder();
    let started = Instant::now();
    for _ in 0..records {
        std::hint::black_box(converter.decode(Some(&bytes)).await.expect("decode"));
    }
    report("converter's decode", records, started);
}

fn converter_decoder() -> schema_registry_converter::async_impl::avro::AvroDecoder {
    use schema_registry_converter::async_impl::schema_registry::SrSettings;
    // Its default client wants a process-wide TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut url = reqwest::Url::parse(&testing::registry_url()).expect("registry URL");
    let (user, password) = (url.username().to_owned(), url.password().map(str::to_owned));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut settings = SrSettings::new_builder(url.as_str().trim_end_matches('/').to_owned());
    if !user.is_empty() {
        settings.set_basic_authorization(&user, password.as_deref());
    }
    schema_registry_converter::async_impl::avro::AvroDecoder::new(
        settings.build().expect("settings"),
    )
}

fn report(what: &str, records: usize, started: Instant) {
    let elapsed = started.elapsed();
    println!(
        "  {what:<22} {:>7.2} µs/record  {:>9.0} records/s",
        elapsed.as_secs_f64() * 1e6 / records as f64,
        records as f64 / elapsed.as_secs_f64()
    );
}

fn sample() -> Envelope {
    Envelope::new(
        "order-service",
        "0190f3b2-1c4d-7a8e-9f00-0123456789ab",
        OrderCreated {
            order_id: "0190f3b2-1c4d-7a8e-9f00-0123456789ab".into(),
            customer_id: "customer-42".into(),
            email: "ada@example.com".into(),
            currency: "EUR".into(),
            items: (1..=3)
                .map(|i| OrderLine {
                    sku: format!("SKU-{i}"),
                    quantity: i,
                    unit_price: 1250 * i64::from(i),
                })
                .collect(),
            total: 17_500,
            shipping_address: Address {
                name: "Ada Lovelace".into(),
                line1: "1 Main St".into(),
                line2: Some("Flat 2".into()),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            payment_token: None,
            payment_method_id: Some("pm_0123456789".into()),
        },
    )
    .with_metadata("userId", "u-42")
    .with_metadata(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
}

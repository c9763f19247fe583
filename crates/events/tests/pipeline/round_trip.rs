//! outbox → relay → Kafka → consumer: what the handler gets is what was
//! written, and the record on the wire is Confluent Avro.

use orderflow_events::codec::AvroCodec;
use orderflow_events::relay::RelayOptions;
use orderflow_events::trace_context::{TraceContext, TRACEPARENT, TRACESTATE};
use orderflow_events::Envelope;
use rdkafka::Message;

use crate::helpers::{created, header, shipped, Env, TestHandler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_survives_the_round_trip() {
    let env = Env::new(3).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(RelayOptions::default());

    let first = created("order-rt-1")
        .with_metadata("userId", "u-42")
        .with_metadata("sessionId", "s-7");
    let caused = Envelope::caused_by(&first, "payment-service", shipped("order-rt-1", 1).event)
        .with_metadata("seq", "1");
    let mut trace = TraceContext::new_root();
    trace.tracestate = Some("vendor=abc".into());
    let mut tx = env.pool().begin().await.expect("begin");
    for e in [&first, &caused] {
        orderflow_events::outbox::enqueue(&mut tx, &env.catalog, "order-rt-1", e, Some(&trace))
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");

    env.wait_applied(2).await;
    let received = handler.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].envelope, first, "first envelope, every field");
    assert_eq!(received[1].envelope, caused, "second envelope, every field");
    assert_eq!(received[1].envelope.causation_id, Some(first.event_id));
    assert_eq!(received[1].envelope.correlation_id, "order-rt-1");
    assert_eq!(
        received[0].envelope.timestamp.timestamp_millis(),
        first.timestamp.timestamp_millis()
    );
    for r in &received {
        assert_eq!(r.key.as_deref(), Some("order-rt-1"));
        assert_eq!(
            r.trace.as_ref(),
            Some(&trace),
            "trace context from the record headers"
        );
        assert_eq!(r.origin.topic, env.topic());
    }
    assert_eq!(received[0].origin.partition, received[1].origin.partition);
    assert_eq!(received[1].origin.offset, received[0].origin.offset + 1);

    // The raw records: Confluent framing, a schema id the registry knows.
    let raw = env.read_topic(&env.topic(), 2).await;
    let payload = raw[0].payload().expect("payload");
    assert_eq!(payload[0], 0, "magic byte");
    let (id, _) = AvroCodec::split_frame(payload).expect("frame");
    let url = format!("{}/schemas/ids/{id}", env.registry_url);
    let body: serde_json::Value = reqwest::get(&url)
        .await
        .expect("GET schema")
        .json()
        .await
        .expect("json");
    let schema: serde_json::Value =
        serde_json::from_str(body["schema"].as_str().expect("schema text")).expect("schema json");
    assert_eq!(schema["name"], "OrderCreated");
    assert_eq!(schema["namespace"], "com.orderflow.events");
    assert_eq!(raw[0].key(), Some(&b"order-rt-1"[..]));
    assert_eq!(header(&raw[0], TRACEPARENT), Some(trace.traceparent()));
    assert_eq!(header(&raw[0], TRACESTATE).as_deref(), Some("vendor=abc"));
    assert_eq!(header(&raw[0], "eventId"), Some(first.event_id.to_string()));
    assert_eq!(
        header(&raw[0], "eventType").as_deref(),
        Some("OrderCreated")
    );
    assert_eq!(
        header(&raw[1], "eventType").as_deref(),
        Some("OrderShipped")
    );
    assert_eq!(env.codec.decode(payload).await.expect("decode"), first);

    assert_eq!(
        env.count("SELECT count(*) FROM outbox").await,
        0,
        "outbox drained"
    );
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 2);
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

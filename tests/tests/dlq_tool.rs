//! `orderctl dlq` against a real stack: a poison record on `order-events`
//! is dead-lettered by every group that reads the topic, and the tool
//! lists it (count, reason, groups) and shows it (origin, error, and the
//! event it could not decode).

use std::time::Duration;

use orderflow_e2e::Stack;
use orderflow_events::access::SERVICES;
use orderflow_events::topics::Stream;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_is_listed_and_shown_by_orderctl_dlq() {
    let stack = Stack::start_default().await;
    stack.wait_all_assigned(Duration::from_secs(60)).await;
    let topic = format!("{}order-events", stack.prefix);
    let dlq = format!("{topic}.dlq");
    // Before anything failed: every dead-letter topic is empty.
    let (ok, text) = stack.orderctl(&["dlq", "list", "--json"], &[]).await;
    assert!(ok, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        serde_json::json!({})
    );

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", stack.kafka_bootstrap_servers())
        .create()
        .expect("producer");
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .key("poison-1")
                .payload("not an event at all"),
            Duration::from_secs(10),
        )
        .await
        .expect("published");

    // Every group that reads order-events gives up on it (the order
    // journal's projection too).
    let groups: Vec<String> = SERVICES
        .iter()
        .flat_map(|s| s.groups(&stack.prefix))
        .filter(|(_, reads)| reads.contains(&Stream::Order))
        .map(|(group, _)| group)
        .collect();
    // The poison record, once per group that reads the topic.
    let summary = stack
        .wait_for_dead_letters(&dlq, "not-wire-format", groups.len() as u64)
        .await;
    let s = &summary[&dlq];
    assert_eq!(
        s["byReason"],
        serde_json::json!({"not-wire-format": groups.len()}),
        "{s}"
    );
    for g in &groups {
        assert_eq!(s["byGroup"][g], 1, "{g}: {s}");
    }
    assert!(s["oldest"].is_string(), "{s}");
    let (ok, table) = stack.orderctl(&["dlq", "list"], &[]).await;
    assert!(
        ok && table.contains(&dlq) && table.contains("not-wire-format="),
        "{table}"
    );

    // One of them, shown: where it came from and why. The dead letters go
    // to the DLQ topic's partition of their key; the first is at offset 0.
    let mut shown = None;
    for p in 0..4 {
        let (ok, text) = stack
            .orderctl(&["dlq", "show", &dlq, &p.to_string(), "0"], &[])
            .await;
        if ok {
            shown = Some(text);
            break;
        }
    }
    let shown = shown.expect("a dead letter at offset 0 of one partition");
    let d: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(d["originalTopic"], topic, "{d}");
    assert_eq!(d["originalPartition"], delivery.partition, "{d}");
    assert_eq!(d["originalOffset"], delivery.offset, "{d}");
    assert_eq!(d["reason"], "not-wire-format", "{d}");
    assert_eq!(d["key"], "poison-1", "{d}");
    assert!(groups.iter().any(|g| d["group"] == *g), "{d}");
    assert!(d["event"]["undecodable"].is_string(), "{d}");

    // A position with no dead letter: a clear error, exit 1.
    let (ok, text) = stack
        .orderctl(&["dlq", "show", &dlq, "0", "999"], &[])
        .await;
    assert!(!ok && text.contains("no dead letter"), "{text}");
}

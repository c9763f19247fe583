//! A backlog goes out as many small batches with several in flight at once:
//! each record once, each key in outbox order.

use std::collections::{BTreeMap, HashSet};

use orderflow_events::relay::RelayOptions;
use orderflow_events::testing;

use crate::helpers::{header, shipped, Env, TestHandler, WAIT};

const KEYS: usize = 4;
const EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_many_batches_in_flight_arrives_once_in_order_per_key() {
    let env = Env::new(3).await;
    // The whole backlog is in the outbox before the relay starts, so it
    // reads full batches back to back and keeps several in flight.
    let mut tx = env.pool().begin().await.expect("begin");
    for i in 0..EVENTS {
        let key = format!("order-pipe-{}", i % KEYS);
        let event = shipped(&key, (i / KEYS + 1) as i32);
        orderflow_events::outbox::enqueue(&mut tx, &env.catalog, &key, &event, None)
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");

    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(RelayOptions {
        batch_size: 16,
        max_in_flight_batches: 4,
        ..RelayOptions::default()
    });
    env.wait_applied(EVENTS as i64).await;
    testing::eventually("outbox drained", WAIT, || async {
        (env.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;

    // Every row is acknowledged once its row is gone: the topic is complete.
    let records = env.read_exactly(&env.topic(), EVENTS).await;
    let ids: HashSet<String> = records
        .iter()
        .map(|r| header(r, "eventId").expect("eventId header"))
        .collect();
    assert_eq!(ids.len(), EVENTS, "each record published once");
    let mut per_key: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (_, key, seq) in env.applied_rows().await {
        per_key.entry(key).or_default().push(seq);
    }
    assert_eq!(per_key.len(), KEYS);
    let expected: Vec<i32> = (1..=(EVENTS / KEYS) as i32).collect();
    for (key, seqs) in &per_key {
        assert_eq!(seqs, &expected, "apply order of {key}");
    }
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

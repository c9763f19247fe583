//! A backlog goes out as many small batches with several in flight at once:
//! each record once, each key in outbox order.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use orderflow_events::relay::RelayOptions;
use orderflow_events::testing;

use crate::helpers::{header, shipped, Env, TestHandler, WAIT};

/// Every key's applied sequence numbers, which must be `1..=per_key` for
/// each of `keys` keys.
async fn assert_applied_in_order(env: &Env, keys: usize, per_key: i32) {
    let mut applied: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (_, key, seq) in env.applied_rows().await {
        applied.entry(key).or_default().push(seq);
    }
    assert_eq!(applied.len(), keys);
    let expected: Vec<i32> = (1..=per_key).collect();
    for (key, seqs) in &applied {
        assert_eq!(seqs, &expected, "apply order of {key}");
    }
}

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
    assert_applied_in_order(&env, KEYS, (EVENTS / KEYS) as i32).await;
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

/// Rows committed one transaction at a time, while earlier batches are in
/// flight and after the relay found the outbox empty, go out on their
/// notifications: the relay's poll is an hour away, so a notification it
/// missed (or a read it skipped) would leave a row in the outbox past the
/// wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_while_batches_are_in_flight_go_out_without_a_poll() {
    const WRITERS: usize = 4;
    const PER_WRITER: i32 = 40;
    let env = Env::new(3).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(RelayOptions {
        max_in_flight_batches: 3,
        poll_interval: Duration::from_secs(3600),
        ..RelayOptions::default()
    });
    let writers = (0..WRITERS).map(|w| {
        let env = &env;
        async move {
            let key = format!("order-notified-{w}");
            for seq in 1..=PER_WRITER {
                env.enqueue(&key, &shipped(&key, seq), None).await;
            }
        }
    });
    futures::future::join_all(writers).await;
    let total = WRITERS as i64 * i64::from(PER_WRITER);
    env.wait_applied(total).await;
    testing::eventually("outbox drained", WAIT, || async {
        (env.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
    assert_applied_in_order(&env, WRITERS, PER_WRITER).await;

    // And once idle, a single row later still goes out on its notification.
    let key = "order-notified-late";
    env.enqueue(key, &shipped(key, 1), None).await;
    env.wait_applied(total + 1).await;
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

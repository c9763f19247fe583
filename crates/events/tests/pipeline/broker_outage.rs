//! The broker goes down while events are written: writers never fail, and
//! once it is back every event arrives, in order per key, applied once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use orderflow_events::relay::RelayOptions;
use orderflow_events::testing;

use crate::helpers::{shipped, Env, TestHandler, WAIT};
use crate::own_broker::OwnBroker;

const KEYS: usize = 5;
const EVENTS: usize = 200;
/// How long the broker stays down while events are written.
const OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_during_a_broker_outage_arrive_in_order_once_it_is_back() {
    let mut broker = OwnBroker::start().await;
    let mut kafka = testing::kafka_config("events-outage");
    kafka.bootstrap_servers = broker.bootstrap();
    // Undeliverable records fail fast so the relay retries them quickly.
    kafka.message_timeout = Duration::from_secs(1);
    let env = Env::with_kafka(kafka, 3).await;
    let relay = env.spawn_relay(RelayOptions {
        max_backoff: Duration::from_secs(1),
        ..RelayOptions::default()
    });
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    // Both sides are connected and working before the outage.
    env.enqueue("warm-up", &shipped("warm-up", 0), None).await;
    env.wait_applied(1).await;

    broker.kill();
    let mut written = HashSet::new();
    for i in 0..EVENTS {
        let key = format!("order-outage-{}", i % KEYS);
        let event = shipped(&key, (i / KEYS + 1) as i32);
        // Each write is its own transaction and must commit.
        env.enqueue(&key, &event, None).await;
        written.insert(event.event_id);
        // Not synchronisation: it paces the writers so the outage lasts
        // several message timeouts and the relay goes through failed
        // deliveries and retries, not just a queue that waits.
        tokio::time::sleep(OUTAGE / EVENTS as u32).await;
        if i == EVENTS / 2 {
            // A row the relay can never encode (a bug upstream), among
            // rows of its key that are waiting for the broker: it must be
            // set aside, neither block the outbox nor be lost.
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope) \
                 VALUES (gen_random_uuid(), 'Bogus', $1, 'order-outage-0', '{\"eventType\": \"Bogus\"}')",
            )
            .bind(env.topic())
            .execute(env.pool())
            .await
            .expect("insert a broken outbox row");
        }
    }
    assert_eq!(
        env.count("SELECT count(*) FROM outbox").await,
        EVENTS as i64 + 1,
        "every event accepted and waiting in the outbox"
    );

    broker.restart().await;
    testing::eventually("all events applied after the outage", WAIT * 2, || async {
        (env.applied_count().await == EVENTS as i64 + 1).then_some(())
    })
    .await;
    testing::eventually("outbox drained", WAIT, || async {
        (env.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;

    let rows = env.applied_rows().await;
    assert_eq!(rows.len(), EVENTS + 1, "each event applied exactly once");
    let mut per_key: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (id, key, seq) in rows.into_iter().filter(|r| r.1 != "warm-up") {
        assert!(seen.insert(id), "event {id} applied twice");
        per_key.entry(key).or_default().push(seq);
    }
    assert_eq!(seen, written, "exactly the written events were applied");
    assert_eq!(per_key.len(), KEYS);
    let expected: Vec<i32> = (1..=(EVENTS / KEYS) as i32).collect();
    for (key, seqs) in &per_key {
        assert_eq!(seqs, &expected, "apply order of {key}");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM inbox").await,
        EVENTS as i64 + 1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox_failed WHERE event_type = 'Bogus'")
            .await,
        1,
        "the broken row was set aside"
    );
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

/// Records of `topic` the relay has handed to its producer (each counted
/// once per send, in outbox order).
fn handed_to_producer(topic: &str) -> u64 {
    let line = format!("orderflow_relay_delay_seconds_count{{topic=\"{topic}\"}} ");
    orderflow_events::metrics::encode()
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |n| n.parse().expect("a count"))
}

/// The producer times records out oldest first, each at its own deadline:
/// had a key's second event been sent while its first waited for the
/// broker, a broker back between their deadlines would take the second
/// after the first failed. So the second waits for the first's
/// acknowledgement; another key's event does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_next_event_waits_for_the_broker_to_acknowledge_the_one_before() {
    let mut broker = OwnBroker::start().await;
    let mut kafka = testing::kafka_config("events-key-wait");
    kafka.bootstrap_servers = broker.bootstrap();
    let env = Env::with_kafka(kafka, 3).await;
    let relay = env.spawn_relay(RelayOptions::default());
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    env.enqueue("warm-up", &shipped("warm-up", 0), None).await;
    env.wait_applied(1).await;
    let topic = env.topic();
    assert_eq!(handed_to_producer(&topic), 1);

    broker.kill();
    env.enqueue("k", &shipped("k", 1), None).await;
    testing::eventually("k's first event handed to the producer", WAIT, || async {
        (handed_to_producer(&topic) == 2).then_some(())
    })
    .await;
    // In one transaction, k's second event first: the read that finds j's
    // event finds k's too, before it.
    let mut tx = env.pool().begin().await.expect("begin");
    for (key, event) in [("k", shipped("k", 2)), ("j", shipped("j", 1))] {
        orderflow_events::outbox::enqueue(&mut tx, &env.catalog, key, &event, None)
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");
    testing::eventually("j's event handed to the producer", WAIT, || async {
        (handed_to_producer(&topic) >= 3).then_some(())
    })
    .await;
    assert_eq!(
        handed_to_producer(&topic),
        3,
        "k's second event is not sent while its first is unacknowledged"
    );
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 3);

    broker.restart().await;
    env.wait_applied(4).await;
    testing::eventually("outbox drained", WAIT, || async {
        (env.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
    let order: Vec<(String, i32)> = env
        .applied_rows()
        .await
        .into_iter()
        .map(|(_, key, seq)| (key, seq))
        .filter(|(key, _)| key == "k")
        .collect();
    assert_eq!(order, [("k".to_owned(), 1), ("k".to_owned(), 2)]);
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

//! With `workers_per_topic`, the partitions of a topic share a few workers:
//! one worker's transactions take records of several partitions, each
//! partition's records stay in order, every event is applied once and
//! every partition's offset is committed.

use orderflow_events::consumer::ConsumerOptions;

use crate::helpers::{shipped, Env, TestHandler};

const PARTITIONS: i32 = 8;
const KEYS: i32 = 24;
const PER_KEY: i32 = 5;

/// Sends a backlog for `KEYS` keys over `PARTITIONS` partitions, consumes
/// it with one worker for the topic and `lanes` lanes, and checks the
/// outcome.
async fn one_worker_for_every_partition(lanes: usize) {
    let env = Env::new(PARTITIONS).await;
    let handler = TestHandler::default();
    let mut events = Vec::new();
    for seq in 1..=PER_KEY {
        for k in 0..KEYS {
            let key = format!("order-{k}");
            events.push((key.clone(), shipped(&key, seq)));
        }
    }
    env.send_backlog(
        &events
            .iter()
            .map(|(k, e)| (k.as_str(), e))
            .collect::<Vec<_>>(),
    )
    .await;
    let consumer = env.spawn_consumer_opts(
        &handler,
        ConsumerOptions {
            workers_per_topic: 1,
            lanes_per_worker: lanes,
            ..ConsumerOptions::default()
        },
    );
    let total = i64::from(KEYS * PER_KEY);
    env.wait_applied(total).await;
    // Committed offsets summing to the number of records: every
    // partition's offset got past its last record.
    env.wait_committed(total).await;

    let rows = env.applied_rows().await;
    for k in 0..KEYS {
        let key = format!("order-{k}");
        let seqs: Vec<i32> = rows.iter().filter(|r| r.1 == key).map(|r| r.2).collect();
        assert_eq!(
            seqs,
            (1..=PER_KEY).collect::<Vec<_>>(),
            "{key}: in order, once each"
        );
    }
    for (_, e) in &events {
        assert_eq!(handler.attempts(e.event_id), 1, "no event handled twice");
    }
    let partitions_used = env
        .count("SELECT count(DISTINCT kafka_partition) FROM inbox")
        .await;
    assert!(
        partitions_used > 1,
        "the keys spread over {partitions_used} partition(s)"
    );
    // `applied.txid` is the transaction's id: at least one transaction
    // applied records of more than one partition.
    let widest = env
        .count(
            "SELECT max(n) FROM (SELECT count(DISTINCT i.kafka_partition) AS n \
             FROM applied a JOIN inbox i ON i.event_id = a.event_id GROUP BY a.txid) t",
        )
        .await;
    assert!(
        widest > 1,
        "every transaction held records of one partition only"
    );
    consumer.stop().await.expect("consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_sharing_a_worker_share_its_transactions() {
    one_worker_for_every_partition(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_of_a_shared_worker_track_each_partition_offset() {
    one_worker_for_every_partition(4).await;
}

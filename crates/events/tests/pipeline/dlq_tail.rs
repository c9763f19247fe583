//! The event-flow page reads the newest dead letters from the tail of each
//! dead-letter partition, and the total from the partitions' ends, so its
//! cost does not grow with the dead-letter topics.

use std::time::Duration;

use orderflow_events::consumer::dlq_headers as h;
use orderflow_events::dead_letters::{read_all, read_latest};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::helpers::Env;

const PARTITIONS: i32 = 3;
const LETTERS: i64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_dead_letters_come_from_the_tail_of_each_partition() {
    let env = Env::new(PARTITIONS).await;
    let dlq = env.dlq_topic();
    let producer: FutureProducer = env.kafka.client_config().create().expect("producer");
    // Dead letters 0..25, each a millisecond later than the one before:
    // 0..20 round-robin over the partitions (n % 3), 20..25 all on
    // partition 0, so the tails of the partitions are not the newest 25.
    let base = chrono::Utc::now().timestamp_millis() - 60_000;
    for n in 0..LETTERS {
        let event_id = format!("e-{n}");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: h::REASON,
                value: Some("handler_failed"),
            })
            .insert(Header {
                key: h::GROUP,
                value: Some("g-tail"),
            })
            .insert(Header {
                key: h::TOPIC,
                value: Some(env.topic().as_str()),
            })
            .insert(Header {
                key: "eventId",
                value: Some(event_id.as_str()),
            });
        producer
            .send(
                FutureRecord::<str, str>::to(&dlq)
                    .partition(if n < 20 {
                        (n % i64::from(PARTITIONS)) as i32
                    } else {
                        0
                    })
                    .key("k")
                    .payload("poison")
                    .timestamp(base + n)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .expect("produce a dead letter");
    }

    let kafka = env.kafka.clone();
    let topics = vec![dlq.clone()];
    let (total, latest) = tokio::task::spawn_blocking(move || {
        read_latest(&kafka, &topics, 4, 6, Duration::from_secs(30))
    })
    .await
    .expect("reader task")
    .expect("read the tail");
    assert_eq!(total, LETTERS as u64, "the total counts every dead letter");
    let ids: Vec<&str> = latest
        .iter()
        .map(|l| l.event_id.as_deref().expect("eventId"))
        .collect();
    // Partition 0 ends 21..24 (20 is fifth from its end), partition 1
    // 10, 13, 16, 19, partition 2 8, 11, 14, 17: the newest six of those.
    assert_eq!(
        ids,
        ["e-24", "e-23", "e-22", "e-21", "e-19", "e-17"],
        "newest first"
    );
    assert!(latest
        .iter()
        .all(|l| l.reason == "handler_failed" && l.group == "g-tail"));

    // Two from the end of each partition, and no more.
    let kafka = env.kafka.clone();
    let topics = vec![dlq.clone()];
    let (_, two_each) = tokio::task::spawn_blocking(move || {
        read_latest(&kafka, &topics, 2, 100, Duration::from_secs(30))
    })
    .await
    .expect("reader task")
    .expect("read the tail");
    let ids: Vec<&str> = two_each
        .iter()
        .map(|l| l.event_id.as_deref().expect("eventId"))
        .collect();
    assert_eq!(ids, ["e-24", "e-23", "e-19", "e-17", "e-16", "e-14"]);

    // The whole read agrees on the count.
    let kafka = env.kafka.clone();
    let all =
        tokio::task::spawn_blocking(move || read_all(&kafka, &[dlq], Duration::from_secs(30)))
            .await
            .expect("reader task")
            .expect("read all");
    assert_eq!(all.len() as u64, total);
}

//! The broker answers a waiting fetch when a record arrives, rather than at
//! its next re-read of storage (`third_party/nisshi/0001-fetch-wakes-on-append.patch`;
//! Apache Kafka does the same). Without it every saga hop waits for part of
//! `fetch.wait.max.ms`.

use std::time::Duration;

use orderflow_events::testing;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::WAIT;

/// The consumer's `fetch.wait.max.ms`. A broker that only re-reads storage
/// first does so at half of it.
const FETCH_WAIT: Duration = Duration::from_secs(20);
/// How long after the previous record arrived the next one is produced, so
/// that the consumer's next fetch is already waiting at the broker.
const PARKED: Duration = Duration::from_secs(1);
/// A record produced [`PARKED`] into a fetch's wait arrives well before the
/// broker's first re-read (at `FETCH_WAIT / 2`, 9 s after the produce).
const WOKEN_WITHIN: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_is_answered_when_a_record_arrives() {
    let kafka = testing::kafka_config("broker-wake");
    let topic = format!("t{}-wake", Uuid::new_v4().simple());
    let spec = orderflow_events::TopicSpec {
        name: topic.clone(),
        partitions: 1,
        retention_ms: 3_600_000,
    };
    orderflow_events::admin::ensure_topics(&kafka, &[spec], 1)
        .await
        .expect("create topic");

    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("wake-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
        .set("fetch.min.bytes", "1")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("offset");
    consumer.assign(&tpl).expect("assign");
    let producer: FutureProducer = kafka.client_config().create().expect("producer");
    let produce = |n: u32| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let payload = format!("record {n}");
            producer
                .send(
                    FutureRecord::<str, str>::to(&topic)
                        .key("k")
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("produce");
            Instant::now()
        }
    };

    // The first record only starts the consumer's fetch loop: it may have
    // been produced before any fetch was waiting.
    produce(0).await;
    let first = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("the first record arrives")
        .expect("read record");
    assert_eq!(first.payload(), Some(&b"record 0"[..]));

    for n in 1..=3 {
        // The consumer fetches again as soon as it has a record; this
        // record lands in that fetch's wait.
        tokio::time::sleep(PARKED).await;
        let produced_at = produce(n).await;
        let record = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("record {n} did not arrive within {WAIT:?}"))
            .expect("read record");
        let waited = produced_at.elapsed();
        assert_eq!(
            record.payload(),
            Some(format!("record {n}").as_bytes()),
            "records arrive in order"
        );
        assert!(
            waited < WOKEN_WITHIN,
            "record {n} arrived {waited:?} after it was produced: the broker did not answer the \
             waiting fetch when it arrived (its own re-read comes {:?} into a {FETCH_WAIT:?} wait)",
            FETCH_WAIT / 2
        );
    }
}

//! Topics keep records for their `retention.ms` (set from the topic table
//! when `admin::ensure_topics` creates them), and the local broker deletes
//! older ones.

use std::time::Duration;

use orderflow_events::{admin, testing, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::helpers::WAIT;
use crate::own_broker::OwnBroker;

const RECORDS: i64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_retention_are_deleted() {
    // The broker's maintenance sweep, which applies retention, runs every
    // 10 minutes by default; here every second.
    let broker = OwnBroker::start_on("sqlite://broker.db?maintenance_interval=1s").await;
    let kafka = orderflow_events::kafka::KafkaConfig::new(&broker.bootstrap(), "retention");
    let short = TopicSpec {
        name: format!("t{}-short", Uuid::new_v4().simple()),
        partitions: 1,
        retention_ms: 1_000,
    };
    let kept = TopicSpec {
        name: format!("t{}-kept", Uuid::new_v4().simple()),
        partitions: 1,
        retention_ms: -1,
    };
    admin::ensure_topics(&kafka, &[short.clone(), kept.clone()], 1)
        .await
        .expect("create topics");

    let producer: FutureProducer = kafka.client_config().create().expect("producer");
    for topic in [&short.name, &kept.name] {
        for n in 0..RECORDS {
            producer
                .send(
                    FutureRecord::<str, str>::to(topic)
                        .key("k")
                        .payload(&format!("record {n}")),
                    Duration::from_secs(10),
                )
                .await
                .expect("produce");
        }
    }

    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "retention-watermarks")
        .create()
        .expect("consumer");
    let low = |topic: &str| {
        consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks")
    };
    assert_eq!(low(&kept.name), (0, RECORDS), "kept topic before the sweep");

    let short_name = short.name.clone();
    testing::eventually(
        "the broker to delete records past retention.ms",
        WAIT,
        || {
            let (low, high) = low(&short_name);
            async move { (low == RECORDS && high == RECORDS).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        low(&kept.name),
        (0, RECORDS),
        "a topic with retention.ms -1 keeps every record through the same sweeps"
    );
}

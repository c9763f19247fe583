//! Records that can never be applied go to the dead-letter topic with their
//! reason and origin, unchanged, and the partition keeps flowing.

use orderflow_events::consumer::dlq_headers;
use orderflow_events::kafka::{EventProducer, OutgoingRecord};
use rdkafka::message::{Message, OwnedHeaders};

use crate::helpers::{header, shipped, Env, TestHandler, BEHAVIOUR};

const KEY: &str = "order-poison";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_dead_lettered_and_the_partition_keeps_flowing() {
    // One partition: every record below is on the same one, in this order.
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let producer = EventProducer::new(&env.kafka).expect("producer");
    let raw = |payload: Vec<u8>| OutgoingRecord {
        topic: env.topic(),
        key: KEY.to_owned(),
        payload,
        headers: OwnedHeaders::new(),
    };
    let garbage = b"this is not avro at all".to_vec();
    // Magic byte 0, schema id 999999, some body.
    let mut unknown_id = vec![0u8];
    unknown_id.extend_from_slice(&999_999u32.to_be_bytes());
    unknown_id.extend_from_slice(&[2, 4, 6, 8]);
    let valid1 = shipped(KEY, 1);
    let rejected = shipped(KEY, 2).with_metadata(BEHAVIOUR, "permanent");
    let valid2 = shipped(KEY, 3);
    let flaky = shipped(KEY, 4).with_metadata(BEHAVIOUR, "retry:2");
    let valid3 = shipped(KEY, 5);

    let mut sent = Vec::new();
    for record in [
        raw(garbage.clone()),
        raw(unknown_id.clone()),
        env.record(KEY, &valid1).await,
        env.record(KEY, &rejected).await,
        env.record(KEY, &valid2).await,
        env.record(KEY, &flaky).await,
        env.record(KEY, &valid3).await,
    ] {
        let (partition, offset) = producer.send_and_wait(&record).await.expect("produce");
        assert_eq!(partition, 0);
        sent.push((offset, record));
    }
    assert_eq!(
        sent.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (0..7).collect::<Vec<i64>>()
    );

    let consumer = env.spawn_consumer(&handler);
    env.wait_applied(4).await;
    env.wait_committed(7).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        applied,
        vec![
            valid1.event_id,
            valid2.event_id,
            flaky.event_id,
            valid3.event_id
        ],
        "every valid event applied once, in order"
    );
    assert_eq!(
        handler.attempts(flaky.event_id),
        3,
        "two retryable failures, then applied"
    );
    assert_eq!(
        handler.attempts(rejected.event_id),
        1,
        "permanent errors are not retried"
    );

    let dlq = env.read_topic(&env.dlq_topic(), 3).await;
    let expected = [
        (0, "not-wire-format", &sent[0].1),
        (1, "unknown-schema-id", &sent[1].1),
        (3, "handler-rejected", &sent[3].1),
    ];
    for (msg, (offset, reason, original)) in dlq.iter().zip(expected) {
        assert_eq!(header(msg, dlq_headers::REASON).as_deref(), Some(reason));
        assert_eq!(header(msg, dlq_headers::TOPIC), Some(env.topic()));
        assert_eq!(header(msg, dlq_headers::PARTITION).as_deref(), Some("0"));
        assert_eq!(header(msg, dlq_headers::OFFSET), Some(offset.to_string()));
        assert_eq!(header(msg, dlq_headers::GROUP), Some(env.group.clone()));
        assert!(header(msg, dlq_headers::ERROR).is_some_and(|e| !e.is_empty()));
        assert_eq!(
            msg.payload(),
            Some(&original.payload[..]),
            "payload unchanged ({reason})"
        );
        assert_eq!(msg.key(), Some(KEY.as_bytes()));
    }
    // The original headers travel with the dead letter.
    assert_eq!(
        header(&dlq[2], "eventId"),
        Some(rejected.event_id.to_string())
    );
    assert_eq!(
        env.high_watermark(&env.dlq_topic()).await,
        3,
        "nothing else dead-lettered"
    );
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 4);
    consumer.stop().await.expect("consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_session_killed_mid_event_is_retried_not_dead_lettered() {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let producer = EventProducer::new(&env.kafka).expect("producer");
    // More failures than the retry budget of handler errors (5 attempts):
    // the server terminating the session (57P01, as in a restart) is
    // infrastructure, retried for as long as it takes.
    let unlucky = shipped(KEY, 1).with_metadata(BEHAVIOUR, "terminate:6");
    let next = shipped(KEY, 2);
    for e in [&unlucky, &next] {
        producer
            .send_and_wait(&env.record(KEY, e).await)
            .await
            .expect("produce");
    }
    env.wait_applied(2).await;
    env.wait_committed(2).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    assert_eq!(applied, vec![unlucky.event_id, next.event_id]);
    assert_eq!(handler.attempts(unlucky.event_id), 7);
    assert_eq!(
        env.high_watermark(&env.dlq_topic()).await,
        0,
        "nothing dead-lettered"
    );
    consumer.stop().await.expect("consumer");
}

//! The same record delivered twice has its effect once.

use orderflow_events::consumer::ConsumerOptions;
use orderflow_events::kafka::EventProducer;
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{shipped, Env, TestHandler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_event_twice_is_applied_once() {
    let env = Env::new(2).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let producer = EventProducer::new(&env.kafka).expect("producer");
    let event = shipped("order-dup-1", 1);
    let record = env.record("order-dup-1", &event).await;
    let first = producer.send_and_wait(&record).await.expect("first send");
    let second = producer.send_and_wait(&record).await.expect("second send");
    assert_eq!(first.0, second.0, "same key, same partition");
    assert_eq!(second.1, first.1 + 1);

    env.wait_applied(1).await;
    env.wait_committed(2).await;
    assert_eq!(env.applied_count().await, 1);
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 1);
    let (offset,): (i64,) = sqlx::query_as("SELECT kafka_offset FROM inbox")
        .fetch_one(env.pool())
        .await
        .expect("inbox row");
    assert_eq!(offset, first.1, "the first copy was applied");
    assert_eq!(handler.attempts(event.event_id), 1);
    consumer.stop().await.expect("consumer");
}

/// A batch that holds an event applied before among new ones applies the
/// new ones once and skips the old one. The batch's first statement (the
/// `BEGIN` with its inbox rows) fails on the old event inside the
/// transaction it opened; the consumer's only connection must come out of
/// that transaction, or the statements after it fail (and the old event is
/// dead-lettered as rejected instead of skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_an_event_applied_before_applies_the_rest_once() {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let producer = EventProducer::new(&env.kafka).expect("producer");
    let old = shipped("order-dup-2", 1);
    let old_record = env.record("order-dup-2", &old).await;
    let consumer = env.spawn_consumer(&handler);
    producer.send_and_wait(&old_record).await.expect("send");
    env.wait_applied(1).await;
    env.wait_committed(1).await;
    consumer.stop().await.expect("consumer");

    // While no consumer runs: the old event again, then two new ones.
    producer.send_and_wait(&old_record).await.expect("resend");
    let new = [shipped("order-dup-2", 2), shipped("order-dup-2", 3)];
    for event in &new {
        let record = env.record("order-dup-2", event).await;
        producer.send_and_wait(&record).await.expect("send");
    }
    let one_connection = PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*env.pool().connect_options()).clone())
        .await
        .expect("pool of one");
    let consumer = env.spawn_consumer_on(&handler, one_connection, ConsumerOptions::default());
    env.wait_applied(3).await;
    env.wait_committed(4).await;

    // Later records go through the same connection.
    let last = shipped("order-dup-2", 4);
    let record = env.record("order-dup-2", &last).await;
    producer.send_and_wait(&record).await.expect("send");
    env.wait_applied(4).await;
    env.wait_committed(5).await;

    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 4);
    assert_eq!(
        env.high_watermark(&env.dlq_topic()).await,
        0,
        "the old event was skipped, not dead-lettered"
    );
    let seqs: Vec<i32> = env.applied_rows().await.iter().map(|r| r.2).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "each event applied once, in order");
    assert_eq!(
        handler.attempts(old.event_id),
        1,
        "the old event is not handled again"
    );
    for event in new.iter().chain([&last]) {
        assert_eq!(handler.attempts(event.event_id), 1, "handled once");
    }
    consumer.stop().await.expect("consumer");
}

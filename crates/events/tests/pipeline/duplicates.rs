//! The same record delivered twice has its effect once.

use orderflow_events::kafka::EventProducer;

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

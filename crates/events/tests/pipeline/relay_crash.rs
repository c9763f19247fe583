//! The relay dies between the outbox commit and publishing, or between
//! publishing and deleting the row: nothing is lost, nothing applied twice.

use orderflow_events::error::RunError;
use orderflow_events::relay::{CrashPoint, RelayOptions};
use orderflow_events::Envelope;

use crate::helpers::{header, shipped, Env, Task, TestHandler};

/// Starts a consumer and a relay that crashes at `point`, writes one event
/// keyed `key` and waits for the crash. The row must still be in the outbox
/// and `published` copies on the topic.
async fn crash_at(
    point: CrashPoint,
    key: &str,
    published: i64,
) -> (Env, TestHandler, Task, Envelope) {
    let env = Env::new(2).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(RelayOptions {
        crash_at: Some(point),
        ..RelayOptions::default()
    });
    let event = shipped(key, 1);
    env.enqueue(key, &event, None).await;

    let ended = relay.join().await;
    assert!(
        matches!(ended, Err(RunError::SimulatedCrash(_))),
        "{ended:?}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox").await,
        1,
        "row still in the outbox"
    );
    assert_eq!(
        env.high_watermark(&env.topic()).await,
        published,
        "records published before the crash"
    );
    (env, handler, consumer, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_publish_delivers_once_after_restart() {
    let (env, _handler, consumer, event) =
        crash_at(CrashPoint::BeforePublish, "order-crash-1", 0).await;

    let relay = env.spawn_relay(RelayOptions::default());
    env.wait_applied(1).await;
    env.wait_committed(1).await;
    assert_eq!(env.high_watermark(&env.topic()).await, 1, "published once");
    assert_eq!(env.applied_rows().await[0].0, event.event_id);
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM outbox").await, 0);
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
    assert_eq!(env.applied_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_publish_republishes_but_applies_once() {
    let (env, handler, consumer, event) =
        crash_at(CrashPoint::AfterPublish, "order-crash-2", 1).await;

    let relay = env.spawn_relay(RelayOptions::default());
    testing_outbox_drained(&env).await;
    let records = env.read_topic(&env.topic(), 2).await;
    let id = event.event_id.to_string();
    for r in &records {
        assert_eq!(header(r, "eventId").as_deref(), Some(id.as_str()));
        assert_eq!(
            env.codec
                .decode(rdkafka::Message::payload(r).expect("payload"))
                .await
                .expect("decode"),
            event
        );
    }
    // The consumer got past both copies.
    env.wait_committed(2).await;
    assert_eq!(env.applied_count().await, 1, "applied once");
    assert_eq!(env.applied_rows().await[0].0, event.event_id);
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 1);
    assert_eq!(
        handler.attempts(event.event_id),
        1,
        "the duplicate never reached the handler"
    );
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

async fn testing_outbox_drained(env: &Env) {
    orderflow_events::testing::eventually("outbox drained", crate::helpers::WAIT, || async {
        (env.count("SELECT count(*) FROM outbox").await == 0).then_some(())
    })
    .await;
}

//! The relay dies between the outbox commit and publishing, or between
//! publishing and deleting the row: nothing is lost, nothing applied twice.

use orderflow_events::error::RunError;
use orderflow_events::relay::{CrashPoint, RelayOptions};

use crate::helpers::{header, shipped, Env, TestHandler};

fn crashing(point: CrashPoint) -> RelayOptions {
    RelayOptions {
        crash_at: Some(point),
        ..RelayOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_publish_delivers_once_after_restart() {
    let env = Env::new(2).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(crashing(CrashPoint::BeforePublish));
    let event = shipped("order-crash-1", 1);
    env.enqueue("order-crash-1", &event, None).await;

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
        0,
        "nothing published"
    );

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
    let env = Env::new(2).await;
    let handler = TestHandler::default();
    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(crashing(CrashPoint::AfterPublish));
    let event = shipped("order-crash-2", 1);
    env.enqueue("order-crash-2", &event, None).await;

    let ended = relay.join().await;
    assert!(
        matches!(ended, Err(RunError::SimulatedCrash(_))),
        "{ended:?}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM outbox").await,
        1,
        "row not deleted"
    );
    assert_eq!(
        env.high_watermark(&env.topic()).await,
        1,
        "published before the crash"
    );

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

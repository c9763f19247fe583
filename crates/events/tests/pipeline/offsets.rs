//! A stopped consumer's offsets are committed: its successor in the group
//! starts after what was applied.

use orderflow_events::relay::RelayOptions;

use crate::helpers::{shipped, Env, TestHandler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_in_the_group_resumes_after_the_applied_events() {
    let env = Env::new(2).await;
    let relay = env.spawn_relay(RelayOptions::default());
    let first = TestHandler::default();
    let consumer = env.spawn_consumer(&first);
    for i in 0..6 {
        env.enqueue(&format!("order-off-{}", i % 3), &shipped("o", i), None)
            .await;
    }
    env.wait_applied(6).await;
    consumer.stop().await.expect("first consumer");
    assert_eq!(env.committed().await, 6, "offsets committed on shutdown");

    // Forget what the inbox knows: if the next consumer re-read any of those
    // records, the handler would apply them again and add rows.
    sqlx::query("DELETE FROM inbox")
        .execute(env.pool())
        .await
        .expect("clear inbox");
    let second = TestHandler::default();
    let consumer = env.spawn_consumer(&second);
    let last = shipped("o", 6);
    env.enqueue("order-off-0", &last, None).await;
    env.wait_applied(7).await;
    env.wait_committed(7).await;
    let rows = env.applied_rows().await;
    assert_eq!(rows.len(), 7, "nothing applied again");
    assert_eq!(rows[6].0, last.event_id);
    let seen: Vec<_> = second
        .received()
        .iter()
        .map(|e| e.envelope.event_id)
        .collect();
    assert_eq!(
        seen,
        vec![last.event_id],
        "the second consumer only got the new event"
    );
    consumer.stop().await.expect("second consumer");
    relay.stop().await.expect("relay");
}

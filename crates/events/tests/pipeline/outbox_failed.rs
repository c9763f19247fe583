//! Rows the relay sets aside (`outbox_failed`) are listed, and moved back to
//! the outbox once the cause is fixed: published once and applied once. A
//! row that still cannot be encoded is set aside again, never lost.

use orderflow_events::outbox::failed;
use orderflow_events::relay::RelayOptions;
use orderflow_events::testing;

use crate::helpers::{created, Env, TestHandler, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_aside_rows_are_listed_and_sent_again_after_the_fix() {
    let env = Env::new(2).await;
    let handler = TestHandler::default();
    // An event an earlier, buggy relay set aside: its row, moved as the
    // relay moves one.
    let event = created("order-failed-1");
    let mut tx = env.pool().begin().await.expect("begin");
    orderflow_events::outbox::enqueue(&mut tx, &env.catalog, "order-failed-1", &event, None)
        .await
        .expect("enqueue");
    sqlx::query(
        "WITH gone AS (DELETE FROM outbox RETURNING *) \
         INSERT INTO outbox_failed (id, event_id, event_type, topic, partition_key, envelope, \
           headers, created_at, reason) \
         SELECT id, event_id, event_type, topic, partition_key, envelope, headers, created_at, \
           'encoder bug (fixed since)' FROM gone",
    )
    .execute(&mut *tx)
    .await
    .expect("set aside");
    // And one the relay can never encode.
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope) \
         VALUES (gen_random_uuid(), 'Bogus', $1, 'order-failed-2', '{\"eventType\": \"Bogus\"}')",
    )
    .bind(env.topic())
    .execute(&mut *tx)
    .await
    .expect("bogus row");
    tx.commit().await.expect("commit");

    let consumer = env.spawn_consumer(&handler);
    let relay = env.spawn_relay(RelayOptions::default());
    testing::eventually("the bogus row set aside", WAIT, || async {
        (env.count("SELECT count(*) FROM outbox_failed").await == 2
            && env.count("SELECT count(*) FROM outbox").await == 0)
            .then_some(())
    })
    .await;
    let mut conn = env.pool().acquire().await.expect("connection");
    let rows = failed::list(&mut conn).await.expect("list");
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(types, ["OrderCreated", "Bogus"]);
    assert_eq!(rows[0].event_id, event.event_id);
    assert_eq!(rows[0].reason, "encoder bug (fixed since)");
    assert!(!rows[1].reason.is_empty());
    let bogus_id = rows[1].id;

    // The fixed one goes back: published and applied, once.
    let moved = failed::retry(&mut conn, Some(&[rows[0].id]))
        .await
        .expect("retry");
    assert_eq!(moved, [event.event_id]);
    env.wait_applied(1).await;
    assert_eq!(handler.received()[0].envelope, event);
    assert!(
        failed::retry(&mut conn, Some(&[rows[0].id]))
            .await
            .expect("retry again")
            .is_empty(),
        "nothing left to move"
    );

    // The broken one goes back and is set aside again, not lost.
    let moved = failed::retry(&mut conn, None).await.expect("retry all");
    assert_eq!(moved.len(), 1);
    testing::eventually("the bogus row set aside again", WAIT, || async {
        let rows = failed::list(&mut *env.pool().acquire().await.ok()?)
            .await
            .ok()?;
        (rows.len() == 1
            && rows[0].event_type == "Bogus"
            && rows[0].id != bogus_id
            && env.count("SELECT count(*) FROM outbox").await == 0)
            .then_some(())
    })
    .await;
    assert_eq!(env.applied_count().await, 1, "nothing applied twice");
    relay.stop().await.expect("relay");
    consumer.stop().await.expect("consumer");
}

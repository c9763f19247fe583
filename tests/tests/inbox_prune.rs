//! A running service deletes the inbox rows that can no longer meet a copy
//! of their event (older than their topic's retention plus the margin),
//! and keeps the rest, including those the saga just wrote.

use orderflow_e2e::{OrderBody, Service, Stack, StackOptions};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_service_prunes_its_inbox_past_retention() {
    let stack = Stack::start(StackOptions {
        env: vec![
            (
                Service::Inventory,
                "INBOX_PRUNE_INTERVAL".into(),
                "1s".into(),
            ),
            (
                Service::Inventory,
                "INBOX_RETENTION_MARGIN".into(),
                "1d".into(),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    // The saga writes rows of its own.
    let sku = stack.sku("PRUNE");
    stack.set_stock(&sku, 5).await;
    let order = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&order, "SHIPPED").await;

    // order-events are kept a year: a row of two years ago goes, one of
    // ten days ago stays.
    let db = stack.db(Service::Inventory).await;
    let topic = format!("{}order-events", stack.prefix);
    let (old, recent) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, days) in [(old, 730), (recent, 10)] {
        sqlx::query(
            "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
             VALUES ('past-group', $1, 'OrderCreated', $2, 0, 0, now() - make_interval(days => $3))",
        )
        .bind(id)
        .bind(&topic)
        .bind(days)
        .execute(&db)
        .await
        .expect("insert an inbox row");
    }
    let saga_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer_group <> 'past-group'")
            .fetch_one(&db)
            .await
            .expect("count");
    assert!(saga_rows > 0, "the saga's events are in the inbox");

    stack
        .wait_for("the pruner to delete the two-year-old row", || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox WHERE event_id = $1")
                .bind(old)
                .fetch_one(&db)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                Ok(())
            } else {
                Err("still there".to_owned())
            }
        })
        .await;
    let left: Vec<Uuid> =
        sqlx::query_scalar("SELECT event_id FROM inbox WHERE consumer_group = 'past-group'")
            .fetch_all(&db)
            .await
            .expect("read");
    assert_eq!(left, [recent]);
    let saga_rows_now: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer_group <> 'past-group'")
            .fetch_one(&db)
            .await
            .expect("count");
    assert!(saga_rows_now >= saga_rows, "the saga's rows stay");
}

//! The inbox keeps a row while a copy of its event can still arrive: its
//! topic's retention plus a margin; rows of topics kept forever stay.

use std::time::Duration;

use orderflow_events::inbox;
use orderflow_events::testing::TestDatabase;
use orderflow_events::{Stream, TopicCatalog};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

async fn row(db: &TestDatabase, topic: &str, days_ago: i32) {
    sqlx::query(
        "INSERT INTO inbox (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
         VALUES ('g', $1, 'E', $2, 0, 0, now() - make_interval(days => $3))",
    )
    .bind(Uuid::new_v4())
    .bind(topic)
    .bind(days_ago)
    .execute(&db.pool)
    .await
    .expect("insert an inbox row");
}

async fn ages(db: &TestDatabase, topic: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT round(EXTRACT(EPOCH FROM now() - processed_at) / 86400)::int4 FROM inbox \
         WHERE topic = $1 ORDER BY processed_at",
    )
    .bind(topic)
    .fetch_all(&db.pool)
    .await
    .expect("read the inbox")
}

#[tokio::test]
async fn rows_past_their_topics_retention_and_the_margin_are_deleted() {
    let db = TestDatabase::new().await;
    // Inventory events are kept 7 days, orders a year; shipping's topic
    // here keeps its records forever.
    let catalog = TopicCatalog::from_lookup(|k| {
        (k == "ORDERFLOW_TOPIC_SHIPPING").then(|| "shipping-forever:1:-1".to_owned())
    })
    .expect("catalog");
    assert_eq!(catalog.spec(Stream::Inventory).retention_ms, 7 * 86_400_000);
    let (inventory, order, shipping) = (
        catalog.topic(Stream::Inventory).to_owned(),
        catalog.topic(Stream::Order).to_owned(),
        catalog.topic(Stream::Shipping).to_owned(),
    );
    for days in [3, 7, 9, 20, 400] {
        for topic in [&inventory, &order, &shipping] {
            row(&db, topic, days).await;
        }
    }
    row(&db, "some-other-topic", 400).await;

    // Margin 1 day: inventory rows older than 8 days go.
    let pruned = inbox::prune(&db.pool, &catalog, DAY).await.expect("prune");
    assert_eq!(pruned, vec![(order.clone(), 1), (inventory.clone(), 3)]);
    assert_eq!(ages(&db, &inventory).await, [7, 3]);
    assert_eq!(ages(&db, &order).await, [20, 9, 7, 3], "a year and a day");
    assert_eq!(
        ages(&db, &shipping).await,
        [400, 20, 9, 7, 3],
        "kept forever"
    );
    assert_eq!(
        ages(&db, "some-other-topic").await,
        [400],
        "not a stream of the table"
    );

    // Again: nothing left to prune.
    assert!(inbox::prune(&db.pool, &catalog, DAY)
        .await
        .expect("prune")
        .is_empty());
}

#[tokio::test]
async fn a_large_backlog_is_deleted_in_batches() {
    let db = TestDatabase::new().await;
    for _ in 0..7 {
        row(&db, "t", 10).await;
    }
    row(&db, "t", 1).await;
    let deleted = inbox::prune_topic(&db.pool, "t", 2 * DAY, 2)
        .await
        .expect("prune");
    assert_eq!(deleted, 7);
    assert_eq!(ages(&db, "t").await, [1]);
}

//! Records already waiting on a partition share a transaction (up to
//! `max_batch`); with `max_batch` 1 each has its own. Either way every event
//! is applied once, in order, and the offsets are committed.

use orderflow_events::kafka::EventProducer;

use crate::helpers::{shipped, Env, TestHandler};

const KEY: &str = "order-batch";
const EVENTS: i32 = 60;

/// Produces `EVENTS` events for one key before a consumer with `max_batch`
/// starts, waits until all are applied and committed, checks they were
/// applied once each and in order, and returns in how many transactions.
async fn transactions_for(max_batch: usize) -> i64 {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let producer = EventProducer::new(&env.kafka).expect("producer");
    // Sent together, as the relay sends a backlog: the records share
    // record batches, so the consumer fetches many at once.
    let (mut ids, mut deliveries) = (Vec::new(), Vec::new());
    for seq in 1..=EVENTS {
        let event = shipped(KEY, seq);
        let record = env.record(KEY, &event).await;
        deliveries.push(producer.send(&record).expect("queue"));
        ids.push(event.event_id);
    }
    for delivery in deliveries {
        assert!(
            matches!(delivery.await, Ok(Ok(_))),
            "the broker acknowledged every record"
        );
    }
    let consumer = env.spawn_consumer_with(&handler, max_batch);
    env.wait_applied(i64::from(EVENTS)).await;
    env.wait_committed(i64::from(EVENTS)).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    assert_eq!(applied, ids, "every event applied once, in offset order");
    for id in &ids {
        assert_eq!(handler.attempts(*id), 1, "no event handled twice");
    }
    assert_eq!(
        env.count("SELECT count(*) FROM inbox").await,
        i64::from(EVENTS)
    );
    // `applied.txid` is the top-level transaction's id (also behind a
    // savepoint, where a row's xmin would be the subtransaction's).
    let transactions = env.count("SELECT count(DISTINCT txid) FROM applied").await;
    consumer.stop().await.expect("consumer");
    transactions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_records_share_a_transaction() {
    let transactions = transactions_for(16).await;
    assert!(
        transactions < i64::from(EVENTS),
        "{EVENTS} events queued before the consumer started were applied in \
         {transactions} transactions: no batching"
    );
    assert!(
        transactions >= i64::from(EVENTS) / 16,
        "{transactions} transactions for {EVENTS} events: batches larger than max_batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_one_gives_each_record_its_own_transaction() {
    assert_eq!(transactions_for(1).await, i64::from(EVENTS));
}

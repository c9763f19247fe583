//! Records already waiting on a partition share a transaction (up to
//! `max_batch`); with `max_batch` 1 each has its own. Either way every event
//! is applied once, in order, and the offsets are committed.

use orderflow_events::consumer::{dlq_headers, ConsumerOptions};

use crate::helpers::{header, shipped, Env, TestHandler, BEHAVIOUR};

const KEY: &str = "order-batch";
const EVENTS: i32 = 60;

/// Produces `EVENTS` events for one key before a consumer with `max_batch`
/// starts, waits until all are applied and committed, checks they were
/// applied once each and in order, and returns in how many transactions.
async fn transactions_for(max_batch: usize) -> i64 {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let events: Vec<_> = (1..=EVENTS).map(|seq| shipped(KEY, seq)).collect();
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    env.send_backlog(&events.iter().map(|e| (KEY, e)).collect::<Vec<_>>())
        .await;
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
    // `applied.txid` is the transaction's id.
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

/// Produces ten events for one key, the fifth rejected by the handler,
/// before a consumer (batches of up to 32, `keep_applied_on_failure` as
/// given)
/// starts. Checks that every other event is applied exactly once and in
/// order, the rejected one is dead-lettered, and every offset committed;
/// returns how many times the handler saw each of the first four.
async fn rejected_mid_batch(keep_applied_on_failure: bool) -> Vec<u32> {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let events: Vec<_> = (1..=10)
        .map(|seq| {
            let e = shipped(KEY, seq);
            if seq == 5 {
                e.with_metadata(BEHAVIOUR, "permanent")
            } else {
                e
            }
        })
        .collect();
    env.send_backlog(&events.iter().map(|e| (KEY, e)).collect::<Vec<_>>())
        .await;
    let consumer = env.spawn_consumer_opts(
        &handler,
        ConsumerOptions {
            keep_applied_on_failure,
            ..ConsumerOptions::default()
        },
    );
    env.wait_applied(9).await;
    env.wait_committed(10).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    let expected: Vec<_> = events
        .iter()
        .filter(|e| !e.metadata.contains_key(BEHAVIOUR))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(applied, expected, "the others applied once each, in order");
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 9);
    let dlq = env.read_topic(&env.dlq_topic(), 1).await;
    assert_eq!(
        header(&dlq[0], dlq_headers::REASON).as_deref(),
        Some("handler-rejected")
    );
    assert_eq!(header(&dlq[0], dlq_headers::OFFSET).as_deref(), Some("4"));
    assert_eq!(handler.attempts(events[4].event_id), 1, "not retried");
    consumer.stop().await.expect("consumer");
    events[..4]
        .iter()
        .map(|e| handler.attempts(e.event_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_record_rolls_the_batch_back_and_the_rest_commit_once() {
    let seen = rejected_mid_batch(false).await;
    // Whether the first four shared the batch with the fifth depends on
    // how the broker split its answers; if they did, they were handled
    // again after the rollback (and still applied once).
    assert!(
        seen.iter().all(|&n| n == 1 || n == 2),
        "handled once, or twice after a rollback: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_applied_records_a_rejected_record_fails_alone() {
    let seen = rejected_mid_batch(true).await;
    assert_eq!(seen, vec![1; 4], "no handler ran twice");
}

/// Records of types the consumer has no handler for, before, between and
/// after the ones it handles: they are acknowledged without an inbox entry
/// (whole batches of them without a transaction), and the others are
/// applied once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_handler_are_acknowledged_and_leave_no_trace() {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let confirmed = |seq: i32| {
        orderflow_events::Envelope::new(
            "order-service",
            KEY,
            orderflow_events::events::OrderConfirmed {
                order_id: KEY.to_owned(),
                payment_id: format!("p-{seq}"),
                total: 100,
                currency: "EUR".into(),
            },
        )
    };
    let mut events = Vec::new();
    events.extend((1..=10).map(confirmed));
    let handled: Vec<_> = (1..=10).map(|seq| shipped(KEY, seq)).collect();
    events.extend(handled.iter().cloned());
    events.extend((11..=20).map(confirmed));
    env.send_backlog(&events.iter().map(|e| (KEY, e)).collect::<Vec<_>>())
        .await;
    let consumer = env.spawn_consumer(&handler);
    env.wait_applied(10).await;
    env.wait_committed(30).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    let expected: Vec<_> = handled.iter().map(|e| e.event_id).collect();
    assert_eq!(
        applied, expected,
        "the handled ones applied once each, in order"
    );
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 10);
    assert_eq!(
        handler.received().len(),
        10,
        "the others never reach the handler"
    );
    consumer.stop().await.expect("consumer");
}

/// Without the inbox (`use_inbox: false`, for handlers idempotent by
/// themselves) nothing is recorded in it, and an event delivered twice
/// reaches its handler twice: deduplicating is then the handler's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_inbox_every_delivery_reaches_the_handler() {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    let events: Vec<_> = (1..=10).map(|seq| shipped(KEY, seq)).collect();
    let mut sent: Vec<_> = events.iter().map(|e| (KEY, e)).collect();
    sent.push((KEY, &events[2]));
    env.send_backlog(&sent).await;
    let consumer = env.spawn_consumer_opts(
        &handler,
        ConsumerOptions {
            max_batch: 4,
            use_inbox: false,
            ..ConsumerOptions::default()
        },
    );
    env.wait_applied(11).await;
    env.wait_committed(11).await;
    let applied: Vec<_> = env.applied_rows().await.into_iter().map(|r| r.0).collect();
    let mut expected: Vec<_> = events.iter().map(|e| e.event_id).collect();
    expected.push(events[2].event_id);
    assert_eq!(applied, expected, "every delivery handled, in order");
    assert_eq!(env.count("SELECT count(*) FROM inbox").await, 0);
    consumer.stop().await.expect("consumer");
}

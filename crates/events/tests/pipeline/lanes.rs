//! With several lanes per partition, a record whose handler waits does not
//! hold up the records of other keys, while the records of its own key wait
//! behind it; the offset only advances past records that are all done.

use orderflow_events::consumer::ConsumerOptions;

use crate::helpers::{shipped, Env, TestHandler, BEHAVIOUR};

const SLOW: &str = "order-slow";
const OTHERS: i32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_key_holds_up_only_its_own_lane() {
    let env = Env::new(1).await;
    let handler = TestHandler::default();
    // Offset 0: held until released; offset 1: the same key, must wait.
    let mut events = vec![
        (
            SLOW.to_owned(),
            shipped(SLOW, 1).with_metadata(BEHAVIOUR, "hold"),
        ),
        (SLOW.to_owned(), shipped(SLOW, 2)),
    ];
    for i in 0..OTHERS {
        let key = format!("order-{i}");
        events.push((key.clone(), shipped(&key, 1)));
    }
    env.send_backlog(
        &events
            .iter()
            .map(|(k, e)| (k.as_str(), e))
            .collect::<Vec<_>>(),
    )
    .await;
    let consumer = env.spawn_consumer_opts(
        &handler,
        ConsumerOptions {
            lanes_per_worker: 4,
            ..ConsumerOptions::default()
        },
    );

    // The other lanes go on while offset 0 is held (one lane would not
    // apply anything until it is released).
    env.wait_applied_at_least(i64::from(OTHERS) / 2).await;
    let held_key_rows = env
        .count(&format!(
            "SELECT count(*) FROM applied WHERE order_key = '{SLOW}'"
        ))
        .await;
    assert_eq!(held_key_rows, 0, "the held key's second event waited");

    handler.release();
    let total = i64::from(OTHERS) + 2;
    env.wait_applied(total).await;
    env.wait_committed(total).await;

    let rows = env.applied_rows().await;
    let slow: Vec<i32> = rows.iter().filter(|r| r.1 == SLOW).map(|r| r.2).collect();
    assert_eq!(slow, vec![1, 2], "one key's events in order, once each");
    let ids: std::collections::HashSet<_> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), events.len(), "every event applied once");
    for (_, e) in &events {
        assert_eq!(handler.attempts(e.event_id), 1, "no event handled twice");
    }
    consumer.stop().await.expect("consumer");
}

//! The handler against a real PostgreSQL database and a real SMTP socket:
//! each test gets a fresh database on the server of
//! `ORDERFLOW_TEST_DATABASE_URL` (default the local one), dropped
//! afterwards, and its own SMTP listener.

use std::sync::Arc;
use std::time::Duration;

use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{NotificationSent, OrderCancelled, ShippingCreated, StockLine};
use orderflow_events::testing::{apply, consumed, TestDatabase};
use orderflow_events::TopicCatalog;
use sqlx::PgPool;
use tokio::sync::mpsc;

use notification_service::handlers::mail::fake::{fake_smtp, Rcpt};
use notification_service::handlers::mail::{Mailer, SmtpSettings};
use notification_service::handlers::OnSagaEvents;

async fn database() -> TestDatabase {
    let db = TestDatabase::new().await;
    let mut m = sqlx::migrate!();
    m.set_ignore_missing(true);
    m.run(&db.pool).await.expect("notification migrations");
    db
}

/// A notifier sending to a new SMTP listener, eight e-mails at once as the
/// service does by default, and what that listener received.
async fn notifier(rcpt: Rcpt) -> (OnSagaEvents, mpsc::UnboundedReceiver<String>) {
    notifier_with(rcpt, 8, Duration::from_secs(10)).await
}

/// [`notifier`] sending `in_flight` e-mails at once, each exchange within
/// `timeout`.
async fn notifier_with(
    rcpt: Rcpt,
    in_flight: usize,
    timeout: Duration,
) -> (OnSagaEvents, mpsc::UnboundedReceiver<String>) {
    let (port, mail) = fake_smtp(rcpt).await;
    let mailer = Mailer::new(&SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        credentials: None,
        from: "orderflow <orders@orderflow.local>".parse().expect("from"),
        timeout,
    });
    let notifier = OnSagaEvents {
        mailer: Arc::new(mailer),
        catalog: TopicCatalog::with_prefix(""),
        in_flight,
    };
    (notifier, mail)
}

fn shipped_to(order_id: &str, email: &str) -> ConsumedEvent {
    consumed(
        ShippingCreated {
            order_id: order_id.into(),
            shipment_id: uuid::Uuid::new_v4().to_string(),
            tracking_number: "OF123456789012".into(),
            carrier: "OrderFlow Post".into(),
            label_url: "/shipments/x/label".into(),
            email: email.into(),
            recipient_name: "Ann".into(),
            items: vec![StockLine {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
        },
        order_id,
    )
}

fn shipped(order_id: &str) -> ConsumedEvent {
    shipped_to(order_id, "ann@example.com")
}

fn cancelled(order_id: &str) -> ConsumedEvent {
    consumed(
        OrderCancelled {
            order_id: order_id.into(),
            reason: "payment declined".into(),
            reason_code: "PAYMENT_DECLINED".into(),
            previous_status: "INVENTORY_RESERVED".into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
        },
        order_id,
    )
}

/// Applies `events` as one batch and commits what the handler wrote, also
/// when it failed a record (as the consumer does for this handler).
async fn apply_batch(
    pool: &PgPool,
    notifier: &OnSagaEvents,
    events: &[ConsumedEvent],
) -> Result<(), (usize, HandlerError)> {
    let span = tracing::Span::none();
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = events.iter().map(|e| (e, &span)).collect();
    let mut tx = pool.begin().await.expect("begin");
    let result = notifier.handle_batch(&mut tx, &batch).await;
    tx.commit().await.expect("commit");
    result
}

/// `(order id, kind, status)` of every notification, and `(key, type)` of
/// every queued event.
type State = (Vec<(String, String, String)>, Vec<(String, String)>);

async fn everything(pool: &PgPool) -> State {
    let rows =
        sqlx::query_as("SELECT order_id, kind, status FROM notifications ORDER BY order_id, kind")
            .fetch_all(pool)
            .await
            .expect("notifications");
    let queued = sqlx::query_as("SELECT partition_key, event_type FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("outbox");
    (rows, queued)
}

fn received(mail: &mut mpsc::UnboundedReceiver<String>) -> usize {
    let mut n = 0;
    while mail.try_recv().is_ok() {
        n += 1;
    }
    n
}

fn rows(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_batch_sends_what_its_records_one_by_one_would() {
    let (batched, single) = (database().await, database().await);
    let (batch_notifier, mut batch_mail) = notifier(Rcpt::Accept).await;
    let (single_notifier, mut single_mail) = notifier(Rcpt::Accept).await;
    let records = [
        shipped("o-1"),
        cancelled("o-2"),
        // Not due: o-2 was cancelled first.
        shipped("o-2"),
        // Due: a cancellation after the confirmation.
        cancelled("o-1"),
        // Not due: o-1 has its confirmation.
        shipped("o-1"),
        // Fails for good (no address): recorded as FAILED.
        shipped_to("o-3", ""),
    ];
    apply_batch(&batched.pool, &batch_notifier, &records)
        .await
        .expect("batch");
    for record in &records {
        apply(&single.pool, &single_notifier, record).await;
    }
    let state = everything(&batched.pool).await;
    assert_eq!(state, everything(&single.pool).await);
    assert_eq!(
        state,
        (
            rows(&[
                ("o-1", "ORDER_CANCELLED", "SENT"),
                ("o-1", "ORDER_CONFIRMATION", "SENT"),
                ("o-2", "ORDER_CANCELLED", "SENT"),
                ("o-3", "ORDER_CONFIRMATION", "FAILED"),
            ]),
            pairs(&[
                ("o-1", "NotificationSent"),
                ("o-2", "NotificationSent"),
                ("o-1", "NotificationSent"),
                ("o-3", "NotificationFailed"),
            ])
        )
    );
    assert_eq!(received(&mut batch_mail), 3);
    assert_eq!(received(&mut single_mail), 3);
    // Each event names its notification.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM notifications n \
         WHERE n.id::text = o.envelope->'data'->>'notificationId' \
           AND n.order_id = o.partition_key AND n.kind = o.envelope->'data'->>'kind')",
    )
    .fetch_one(&batched.pool)
    .await
    .expect("compare");
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn one_at_a_time_a_server_asking_to_retry_keeps_the_records_before_and_sends_nothing_after() {
    let db = database().await;
    let (notifier, mut mail) = notifier_with(
        Rcpt::ReplyFor("later", "451 4.3.0 try again later\r\n"),
        1,
        Duration::from_secs(10),
    )
    .await;
    let records = [
        shipped("o-1"),
        shipped_to("o-2", "later@example.com"),
        shipped("o-3"),
    ];
    let (at, e) = apply_batch(&db.pool, &notifier, &records)
        .await
        .expect_err("o-2 is to be retried");
    assert_eq!(at, 1);
    assert!(matches!(e, HandlerError::Infrastructure(_)), "{e}");
    assert_eq!(
        everything(&db.pool).await,
        (
            rows(&[("o-1", "ORDER_CONFIRMATION", "SENT")]),
            pairs(&[("o-1", "NotificationSent")])
        )
    );
    assert_eq!(received(&mut mail), 1, "o-3 was not sent");
}

/// E-mails of several orders at once: once the server asks to retry one,
/// that order's later e-mails are not sent (they would overtake it), the
/// batch fails at that record, and whatever went out is recorded, so that
/// the records handed back (as the consumer does, from the failed one on)
/// send nothing twice.
#[tokio::test]
async fn a_server_asking_to_retry_sends_nothing_out_of_order_and_nothing_twice() {
    let db = database().await;
    let (notifier, mut mail) =
        notifier(Rcpt::ReplyFor("later", "451 4.3.0 try again later\r\n")).await;
    let records = [
        shipped("o-1"),
        shipped_to("o-2", "later@example.com"),
        // Would be accepted, but must not overtake o-2's confirmation.
        cancelled("o-2"),
        shipped("o-3"),
        shipped("o-4"),
    ];
    let (at, e) = apply_batch(&db.pool, &notifier, &records)
        .await
        .expect_err("o-2 is to be retried");
    assert_eq!(at, 1);
    assert!(matches!(e, HandlerError::Infrastructure(_)), "{e}");
    let (first_rows, first_queued) = everything(&db.pool).await;
    assert!(
        first_rows.contains(&("o-1".into(), "ORDER_CONFIRMATION".into(), "SENT".into())),
        "{first_rows:?}"
    );
    assert!(
        first_rows.iter().all(|r| r.0 != "o-2"),
        "nothing of o-2: {first_rows:?}"
    );
    let first_sent = received(&mut mail);
    assert_eq!(
        first_sent,
        first_rows.len(),
        "every e-mail sent is recorded"
    );
    assert_eq!(first_queued.len(), first_rows.len(), "one event per e-mail");

    // The consumer hands back the records from the failed one on; the
    // server now accepts everything.
    let (notifier, mut mail) = notifier_with(Rcpt::Accept, 8, Duration::from_secs(10)).await;
    apply_batch(&db.pool, &notifier, &records[1..])
        .await
        .expect("the rest");
    let (rows_now, queued) = everything(&db.pool).await;
    assert_eq!(
        rows_now,
        rows(&[
            ("o-1", "ORDER_CONFIRMATION", "SENT"),
            ("o-2", "ORDER_CANCELLED", "SENT"),
            ("o-2", "ORDER_CONFIRMATION", "SENT"),
            ("o-3", "ORDER_CONFIRMATION", "SENT"),
            ("o-4", "ORDER_CONFIRMATION", "SENT"),
        ])
    );
    assert_eq!(queued.len(), 5);
    assert_eq!(first_sent + received(&mut mail), 5, "no e-mail sent twice");
    // o-2's confirmation went out before its cancellation.
    let o2: Vec<(String, String)> = queued.into_iter().filter(|q| q.0 == "o-2").collect();
    assert_eq!(o2.len(), 2);
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT envelope->'data'->>'kind' FROM outbox WHERE partition_key = 'o-2' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("o-2 events");
    assert_eq!(kinds, ["ORDER_CONFIRMATION", "ORDER_CANCELLED"]);
}

/// A server that holds up one e-mail holds up that order only when the
/// batch sends several at once; one at a time, the rest wait for it.
#[tokio::test]
async fn an_e_mail_the_server_holds_up_holds_up_only_its_order() {
    let records = [shipped_to("o-1", "slow@example.com"), shipped("o-2")];
    for (in_flight, sent) in [(8, 1), (1, 0)] {
        let db = database().await;
        let (notifier, mut mail) =
            notifier_with(Rcpt::HangFor("slow"), in_flight, Duration::from_secs(3)).await;
        let (at, e) = apply_batch(&db.pool, &notifier, &records)
            .await
            .expect_err("o-1 is to be retried");
        assert_eq!(at, 0, "in flight {in_flight}");
        assert!(matches!(e, HandlerError::Infrastructure(_)), "{e}");
        let (rows_now, queued) = everything(&db.pool).await;
        assert_eq!(received(&mut mail), sent, "in flight {in_flight}");
        if sent == 1 {
            assert_eq!(rows_now, rows(&[("o-2", "ORDER_CONFIRMATION", "SENT")]));
            assert_eq!(queued, pairs(&[("o-2", "NotificationSent")]));
        } else {
            assert_eq!((rows_now, queued), (Vec::new(), Vec::new()));
        }
    }
}

#[tokio::test]
async fn a_malformed_record_keeps_the_records_before_it() {
    let db = database().await;
    let (notifier, mut mail) = notifier(Rcpt::Accept).await;
    let unrelated = consumed(
        NotificationSent {
            order_id: "o-2".into(),
            notification_id: "n-1".into(),
            kind: "ORDER_CONFIRMATION".into(),
            recipient: "ann@example.com".into(),
            subject: "s".into(),
        },
        "o-2",
    );
    let records = [shipped("o-1"), unrelated, shipped("o-3")];
    let (at, e) = apply_batch(&db.pool, &notifier, &records)
        .await
        .expect_err("NotificationSent sends no e-mail");
    assert_eq!(at, 1);
    assert!(matches!(e, HandlerError::Permanent(_)), "{e}");
    assert_eq!(
        everything(&db.pool).await,
        (
            rows(&[("o-1", "ORDER_CONFIRMATION", "SENT")]),
            pairs(&[("o-1", "NotificationSent")])
        )
    );
    assert_eq!(received(&mut mail), 1);
}

/// Batches on several connections at once, each with confirmations and
/// cancellations of the same orders in a different order: the order locks
/// keep every kind to one e-mail per order (a second one would break the
/// unique constraint and fail its batch), and never deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_send_each_kind_once_per_order() {
    let db = database().await;
    let (notifier, mut mail) = notifier(Rcpt::Accept).await;
    let orders: Vec<String> = (0..6).map(|i| format!("o-{i}")).collect();
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let (pool, notifier) = (db.pool.clone(), notifier.clone());
        let mut records: Vec<ConsumedEvent> = orders
            .iter()
            .flat_map(|o| [shipped(o), cancelled(o)])
            .collect();
        let turn = t * 3 % records.len();
        records.rotate_left(turn);
        if t % 2 == 1 {
            records.reverse();
        }
        tasks.push(tokio::spawn(async move {
            apply_batch(&pool, &notifier, &records).await
        }));
    }
    for task in tasks {
        task.await
            .expect("task")
            .unwrap_or_else(|(i, e)| panic!("record {i} failed: {e}"));
    }
    let (rows, queued) = everything(&db.pool).await;
    for o in &orders {
        let kinds: Vec<&str> = rows
            .iter()
            .filter(|r| &r.0 == o)
            .map(|r| r.1.as_str())
            .collect();
        assert!(
            kinds == ["ORDER_CANCELLED"] || kinds == ["ORDER_CANCELLED", "ORDER_CONFIRMATION"],
            "{o}: {kinds:?}"
        );
    }
    assert_eq!(queued.len(), rows.len(), "one event per notification");
    assert_eq!(
        received(&mut mail),
        rows.len(),
        "one e-mail per notification"
    );
}

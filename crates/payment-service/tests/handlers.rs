//! The event handlers against a real, fresh PostgreSQL database
//! (`ORDERFLOW_TEST_DATABASE_URL`, default the local server): one charge
//! per order, refunds, tombstones, and a cancellation racing the charge.

use std::time::Duration;

use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{Address, InventoryReserved, OrderCancelled, StockLine};
use orderflow_events::testing::{admin_database_url, apply, consumed, TestDatabase};
use orderflow_events::TopicCatalog;
use payment_service::handlers::{OnInventoryReserved, OnOrderCancelled};
use payment_service::MIGRATOR;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

const MAX: i64 = 1_000_000;

async fn setup() -> TestDatabase {
    let db = TestDatabase::new().await;
    // The shared outbox/inbox migrations (1, 2) are in the same table, as in
    // the running service.
    let mut migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ignore_missing: true,
        locking: MIGRATOR.locking,
        no_tx: MIGRATOR.no_tx,
    };
    migrator.set_ignore_missing(true);
    migrator.run(&db.pool).await.expect("payment migrations");
    db
}

/// `InventoryReserved` as written before v2: the token in the event.
fn reserved(order_id: &str, token: &str, total: i64) -> ConsumedEvent {
    reserved_for(order_id, "c-1", Some(token), None, total)
}

/// `InventoryReserved` of a v2 order: customer `customer`'s payment method.
fn reserved_with(order_id: &str, customer: &str, method: &str, total: i64) -> ConsumedEvent {
    reserved_for(order_id, customer, None, Some(method), total)
}

fn reserved_for(
    order_id: &str,
    customer: &str,
    token: Option<&str>,
    method: Option<&str>,
    total: i64,
) -> ConsumedEvent {
    consumed(
        InventoryReserved {
            order_id: order_id.into(),
            items: vec![StockLine {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
            customer_id: customer.into(),
            email: "ann@example.com".into(),
            total,
            currency: "EUR".into(),
            payment_token: token.map(Into::into),
            payment_method_id: method.map(Into::into),
            shipping_address: Address {
                name: "Ann".into(),
                line1: "Main St 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
        },
        order_id,
    )
}

fn cancelled(order_id: &str) -> ConsumedEvent {
    consumed(
        OrderCancelled {
            order_id: order_id.into(),
            reason: "customer asked".into(),
            reason_code: "CUSTOMER_REQUEST".into(),
            previous_status: "PAID".into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
        },
        order_id,
    )
}

/// Registers customer `customer`'s `token`, as `POST /payment-methods` does.
async fn method(pool: &PgPool, customer: &str, token: &str) -> String {
    let id = payment_service::domain::methods::new_id();
    let mut conn = pool.acquire().await.expect("connection");
    payment_service::db::insert_method(&mut conn, &id, customer, token)
        .await
        .expect("method");
    id
}

/// `(status, decline_code, payment_token)` of `order_id`'s payment.
async fn payment_row(pool: &PgPool, order_id: &str) -> (String, Option<String>, Option<String>) {
    sqlx::query_as("SELECT status, decline_code, payment_token FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(pool)
        .await
        .expect("payment")
}

fn charge() -> OnInventoryReserved {
    OnInventoryReserved {
        catalog: TopicCatalog::with_prefix(""),
        max_amount: MAX,
    }
}

fn cancel() -> OnOrderCancelled {
    OnOrderCancelled {
        catalog: TopicCatalog::with_prefix(""),
    }
}

/// Runs `handler` in its own committed transaction, as the consumer does.
async fn status(pool: &PgPool, order_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .expect("payment")
}

/// `(eventType, data)` of the events in the outbox for `order_id`.
async fn emitted(pool: &PgPool, order_id: &str) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT event_type, envelope->'data' FROM outbox WHERE partition_key = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
    .expect("outbox")
}

fn types(events: &[(String, serde_json::Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

#[tokio::test]
async fn charged_once_then_refunded_once() {
    let db = setup().await;
    let pool = &db.pool;
    apply(pool, &charge(), &reserved("o-1", "tok_visa", 3998)).await;
    apply(pool, &charge(), &reserved("o-1", "tok_visa", 3998)).await;
    assert_eq!(status(pool, "o-1").await.as_deref(), Some("PROCESSED"));
    apply(pool, &cancel(), &cancelled("o-1")).await;
    apply(pool, &cancel(), &cancelled("o-1")).await;
    assert_eq!(status(pool, "o-1").await.as_deref(), Some("REFUNDED"));
    let events = emitted(pool, "o-1").await;
    assert_eq!(types(&events), ["PaymentProcessed", "PaymentRefunded"]);
    let (processed, refunded) = (&events[0].1, &events[1].1);
    assert_eq!(processed["amount"], 3998);
    assert_eq!(processed["items"][0]["sku"], "SKU-1");
    assert_eq!(refunded["paymentId"], processed["paymentId"]);
    assert_eq!(refunded["amount"], 3998);
    assert_eq!(refunded["currency"], "EUR");
    assert_eq!(refunded["reason"], "order cancelled: customer asked");
}

#[tokio::test]
async fn declines_carry_the_code_and_are_not_refunded() {
    let db = setup().await;
    let pool = &db.pool;
    apply(pool, &charge(), &reserved("o-2", "tok_chargeDeclined", 100)).await;
    apply(pool, &charge(), &reserved("o-3", "tok_visa", MAX + 1)).await;
    apply(pool, &cancel(), &cancelled("o-2")).await;
    assert_eq!(status(pool, "o-2").await.as_deref(), Some("DECLINED"));
    let events = emitted(pool, "o-2").await;
    assert_eq!(types(&events), ["PaymentFailed"]);
    assert_eq!(events[0].1["declineCode"], "card_declined");
    assert_eq!(events[0].1["reason"], "Your card was declined.");
    let events = emitted(pool, "o-3").await;
    assert_eq!(events[0].1["declineCode"], "amount_too_large");
}

#[tokio::test]
async fn a_cancellation_first_leaves_a_tombstone_that_stops_the_charge() {
    let db = setup().await;
    let pool = &db.pool;
    apply(pool, &cancel(), &cancelled("o-4")).await;
    apply(pool, &charge(), &reserved("o-4", "tok_visa", 100)).await;
    assert_eq!(status(pool, "o-4").await.as_deref(), Some("VOIDED"));
    assert!(emitted(pool, "o-4").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_racing_the_charge_never_leaves_money_taken() {
    let db = setup().await;
    let options: PgConnectOptions = admin_database_url().parse().expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.database(&db.name))
        .await
        .expect("pool");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let order_id = format!("race-{i}");
        let p = pool.clone();
        let o = order_id.clone();
        tasks.push(tokio::spawn(async move {
            apply(&p, &charge(), &reserved(&o, "tok_visa", 100)).await;
        }));
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            apply(&p, &cancel(), &cancelled(&order_id)).await;
        }));
    }
    for r in futures_join(tasks).await {
        r.expect("handler task");
    }
    for i in 0..50 {
        let order_id = format!("race-{i}");
        let status = status(&pool, &order_id).await.expect("a row");
        let events = emitted(&pool, &order_id).await;
        match status.as_str() {
            "VOIDED" => assert!(events.is_empty(), "{order_id}"),
            "REFUNDED" => assert_eq!(
                types(&events),
                ["PaymentProcessed", "PaymentRefunded"],
                "{order_id}"
            ),
            other => panic!("{order_id} ended {other}"),
        }
    }
    pool.close().await;
}

async fn futures_join<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Every payment (order, status, decline code, reason) and queued event
/// (key, type, data without the generated payment id).
async fn everything(pool: &PgPool) -> (Vec<Payment>, Vec<Queued>) {
    let payments = sqlx::query_as(
        "SELECT order_id, status, decline_code, reason FROM payments ORDER BY order_id",
    )
    .fetch_all(pool)
    .await
    .expect("payments");
    let queued = sqlx::query_as(
        "SELECT partition_key, event_type, (envelope->'data') - 'paymentId' FROM outbox ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("outbox");
    (payments, queued)
}

type Payment = (String, String, Option<String>, Option<String>);
type Queued = (String, String, serde_json::Value);

#[tokio::test]
async fn a_batch_of_charges_ends_as_its_records_applied_one_by_one() {
    let records = [
        reserved("o-1", "tok_visa", 3998),
        reserved("o-2", "tok_chargeDeclined", 100),
        // o-1 again under a new event id: charged already.
        reserved("o-1", "tok_visa", 3998),
        // Cancelled before (below): a tombstone stops the charge.
        reserved("o-3", "tok_visa", 100),
        reserved("o-4", "tok_visa", MAX + 1),
    ];
    let (batched, single) = (setup().await, setup().await);
    for db in [&batched, &single] {
        apply(&db.pool, &cancel(), &cancelled("o-3")).await;
    }
    let span = tracing::Span::none();
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = records.iter().map(|e| (e, &span)).collect();
    let mut tx = batched.pool.begin().await.expect("begin");
    charge()
        .handle_batch(&mut tx, &batch)
        .await
        .expect("the batch applies");
    tx.commit().await.expect("commit");
    for record in &records {
        apply(&single.pool, &charge(), record).await;
    }
    let state = everything(&batched.pool).await;
    assert_eq!(state, everything(&single.pool).await);
    let (payments, queued) = state;
    let statuses: Vec<(&str, &str)> = payments
        .iter()
        .map(|p| (p.0.as_str(), p.1.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("o-1", "PROCESSED"),
            ("o-2", "DECLINED"),
            ("o-3", "VOIDED"),
            ("o-4", "DECLINED")
        ]
    );
    let types: Vec<(&str, &str)> = queued
        .iter()
        .map(|q| (q.0.as_str(), q.1.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("o-1", "PaymentProcessed"),
            ("o-2", "PaymentFailed"),
            ("o-4", "PaymentFailed")
        ]
    );
    // The row and the event agree on the payment id.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox o JOIN payments p ON p.order_id = o.partition_key \
         WHERE o.envelope->'data'->>'paymentId' <> p.payment_id::text",
    )
    .fetch_one(&batched.pool)
    .await
    .expect("compare ids");
    assert_eq!(mismatched, 0);
}

#[tokio::test]
async fn a_batch_names_its_malformed_record_and_writes_nothing() {
    let db = setup().await;
    let records = [reserved("o-1", "tok_visa", 100), cancelled("o-2")];
    let span = tracing::Span::none();
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = records.iter().map(|e| (e, &span)).collect();
    let mut tx = db.pool.begin().await.expect("begin");
    let (at, e) = charge()
        .handle_batch(&mut tx, &batch)
        .await
        .expect_err("OrderCancelled is not a charge request");
    tx.rollback().await.expect("rollback");
    assert_eq!(at, 1);
    assert!(matches!(e, HandlerError::Permanent(_)), "{e}");
    assert_eq!(everything(&db.pool).await, (Vec::new(), Vec::new()));
}

#[tokio::test]
async fn an_order_is_charged_with_its_customers_payment_method() {
    let db = setup().await;
    let pool = &db.pool;
    let visa = method(pool, "c-1", "tok_visa").await;
    let declined = method(pool, "c-1", "tok_chargeDeclined").await;
    apply(pool, &charge(), &reserved_with("o-1", "c-1", &visa, 500)).await;
    apply(
        pool,
        &charge(),
        &reserved_with("o-2", "c-1", &declined, 500),
    )
    .await;
    assert_eq!(
        payment_row(pool, "o-1").await,
        ("PROCESSED".into(), None, Some("tok_visa".into()))
    );
    assert_eq!(
        payment_row(pool, "o-2").await,
        (
            "DECLINED".into(),
            Some("card_declined".into()),
            Some("tok_chargeDeclined".into())
        )
    );
    assert_eq!(types(&emitted(pool, "o-1").await), ["PaymentProcessed"]);
    assert_eq!(types(&emitted(pool, "o-2").await), ["PaymentFailed"]);
}

#[tokio::test]
async fn another_customers_or_an_unknown_method_is_declined_and_charges_nothing() {
    let db = setup().await;
    let pool = &db.pool;
    let bobs = method(pool, "c-2", "tok_visa").await;
    let unknown = payment_service::domain::methods::new_id();
    // One batch: the methods are looked up together.
    let records = [
        reserved_with("o-1", "c-1", &bobs, 500),
        reserved_with("o-2", "c-1", &unknown, 500),
        reserved_with("o-3", "c-2", &bobs, 500),
    ];
    let handler = charge();
    let mut tx = pool.begin().await.expect("tx");
    let spans = [
        tracing::Span::none(),
        tracing::Span::none(),
        tracing::Span::none(),
    ];
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = records.iter().zip(&spans).collect();
    handler.handle_batch(&mut tx, &batch).await.expect("batch");
    tx.commit().await.expect("commit");
    for o in ["o-1", "o-2"] {
        assert_eq!(
            payment_row(pool, o).await,
            (
                "DECLINED".into(),
                Some("invalid_payment_method".into()),
                None
            ),
            "{o}"
        );
        let events = emitted(pool, o).await;
        assert_eq!(types(&events), ["PaymentFailed"], "{o}");
        assert_eq!(events[0].1["declineCode"], "invalid_payment_method");
    }
    assert_eq!(payment_row(pool, "o-3").await.0, "PROCESSED");
}

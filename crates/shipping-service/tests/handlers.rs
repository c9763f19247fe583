//! The handlers against a real PostgreSQL database: each test gets a fresh
//! database on the server of `ORDERFLOW_TEST_DATABASE_URL` (default the
//! local one), dropped afterwards.

use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{Address, OrderCancelled, PaymentProcessed, StockLine};
use orderflow_events::testing::{apply, consumed, TestDatabase};
use orderflow_events::TopicCatalog;
use sqlx::PgPool;

use shipping_service::handlers::{OnOrderCancelled, OnPaymentProcessed};

async fn database() -> TestDatabase {
    let db = TestDatabase::new().await;
    let mut m = sqlx::migrate!();
    m.set_ignore_missing(true);
    m.run(&db.pool).await.expect("shipping migrations");
    db
}

fn paid(order_id: &str) -> ConsumedEvent {
    consumed(
        PaymentProcessed {
            order_id: order_id.into(),
            payment_id: uuid::Uuid::new_v4().to_string(),
            amount: 100,
            currency: "EUR".into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
            shipping_address: Address {
                name: "Ann".into(),
                line1: "Main St 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            items: vec![StockLine {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
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
            previous_status: "RESERVED".into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
        },
        order_id,
    )
}

fn handler() -> OnPaymentProcessed {
    OnPaymentProcessed {
        catalog: TopicCatalog::with_prefix(""),
        carrier: "OrderFlow Post".into(),
    }
}

async fn apply_batch(pool: &PgPool, events: &[ConsumedEvent]) -> Result<(), (usize, HandlerError)> {
    let span = tracing::Span::none();
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = events.iter().map(|e| (e, &span)).collect();
    let mut tx = pool.begin().await.expect("begin");
    handler().handle_batch(&mut tx, &batch).await?;
    tx.commit().await.expect("commit");
    Ok(())
}

/// `(order id, status)` of every row, and `(key, type)` of every queued
/// event.
async fn everything(pool: &PgPool) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let rows = sqlx::query_as("SELECT order_id, status FROM shipments ORDER BY order_id")
        .fetch_all(pool)
        .await
        .expect("shipments");
    let queued = sqlx::query_as("SELECT partition_key, event_type FROM outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("outbox");
    (rows, queued)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_batch_creates_each_shipment_once_and_none_after_a_cancellation() {
    let (batched, single) = (database().await, database().await);
    let records = [paid("o-1"), paid("o-2"), paid("o-1"), paid("o-3")];
    for db in [&batched, &single] {
        apply(&db.pool, &OnOrderCancelled, &cancelled("o-3")).await;
    }
    apply_batch(&batched.pool, &records).await.expect("batch");
    for record in &records {
        apply(&single.pool, &handler(), record).await;
    }
    let state = everything(&batched.pool).await;
    assert_eq!(state, everything(&single.pool).await);
    assert_eq!(
        state,
        (
            pairs(&[("o-1", "CREATED"), ("o-2", "CREATED"), ("o-3", "VOIDED")]),
            pairs(&[("o-1", "ShippingCreated"), ("o-2", "ShippingCreated")])
        )
    );
    assert_eq!(mismatched(&batched.pool).await, 0);
}

/// Rows whose queued event is not the one that announced them, or names
/// another tracking number or shipment id.
async fn mismatched(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM shipments s JOIN outbox o ON o.partition_key = s.order_id \
         WHERE o.event_id <> s.last_event_id \
            OR o.envelope->'data'->>'trackingNumber' <> s.tracking_number \
            OR o.envelope->'data'->>'shipmentId' <> s.shipment_id::text",
    )
    .fetch_one(pool)
    .await
    .expect("compare")
}

/// The tracking number every shipment of `o-unlucky` is given by the
/// database, for its next `times` inserts: the one `o-first` already has.
/// A random twelve-digit number never collides in a test, so the database
/// makes it collide.
async fn collide(pool: &PgPool, times: i32) {
    apply_batch(pool, &[paid("o-first")]).await.expect("first");
    for sql in [
        "UPDATE shipments SET tracking_number = 'OF000000000001' WHERE order_id = 'o-first'",
        "UPDATE outbox SET envelope = jsonb_set(envelope, '{data,trackingNumber}', \
           '\"OF000000000001\"') WHERE partition_key = 'o-first'",
        "CREATE TABLE collisions_left (n int NOT NULL)",
        "CREATE FUNCTION collide() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.order_id = 'o-unlucky' AND (SELECT n FROM collisions_left) > 0 THEN \
             UPDATE collisions_left SET n = n - 1; \
             NEW.tracking_number := 'OF000000000001'; \
           END IF; \
           RETURN NEW; END $$",
        "CREATE TRIGGER collide BEFORE INSERT ON shipments \
           FOR EACH ROW EXECUTE FUNCTION collide()",
    ] {
        sqlx::query(sql).execute(pool).await.expect(sql);
    }
    sqlx::query("INSERT INTO collisions_left VALUES ($1)")
        .bind(times)
        .execute(pool)
        .await
        .expect("collisions");
}

async fn collisions_left(pool: &PgPool) -> i32 {
    sqlx::query_scalar("SELECT n FROM collisions_left")
        .fetch_one(pool)
        .await
        .expect("collisions left")
}

#[tokio::test]
async fn a_taken_tracking_number_is_drawn_again() {
    let db = database().await;
    collide(&db.pool, 2).await;
    apply_batch(&db.pool, &[paid("o-unlucky"), paid("o-2")])
        .await
        .expect("batch");
    assert_eq!(collisions_left(&db.pool).await, 0, "collided twice");
    assert_eq!(
        everything(&db.pool).await,
        (
            pairs(&[
                ("o-2", "CREATED"),
                ("o-first", "CREATED"),
                ("o-unlucky", "CREATED")
            ]),
            pairs(&[
                ("o-first", "ShippingCreated"),
                ("o-2", "ShippingCreated"),
                ("o-unlucky", "ShippingCreated")
            ])
        )
    );
    let numbers: Vec<String> =
        sqlx::query_scalar("SELECT tracking_number FROM shipments ORDER BY order_id")
            .fetch_all(&db.pool)
            .await
            .expect("tracking numbers");
    assert!(
        numbers.iter().filter(|n| *n == "OF000000000001").count() == 1,
        "{numbers:?}"
    );
    // Only the drafts that were inserted were queued, each with its own
    // row's tracking number.
    assert_eq!(mismatched(&db.pool).await, 0);
}

#[tokio::test]
async fn no_free_tracking_number_is_retryable_and_writes_nothing() {
    let db = database().await;
    collide(&db.pool, 1000).await;
    let before = everything(&db.pool).await;
    let (at, e) = apply_batch(&db.pool, &[paid("o-2"), paid("o-unlucky")])
        .await
        .expect_err("every tracking number collides");
    assert_eq!(at, 1, "the unlucky record");
    assert!(matches!(e, HandlerError::Retryable(_)), "{e}");
    // apply_batch did not commit: the batch, o-2 included, is rolled back.
    assert_eq!(everything(&db.pool).await, before);
    assert_eq!(collisions_left(&db.pool).await, 1000);
}

#[tokio::test]
async fn a_batch_names_its_malformed_record_and_writes_nothing() {
    let db = database().await;
    let records = [paid("o-1"), cancelled("o-2")];
    let (at, e) = apply_batch(&db.pool, &records)
        .await
        .expect_err("OrderCancelled is not a payment");
    assert_eq!(at, 1);
    assert!(matches!(e, HandlerError::Permanent(_)), "{e}");
    assert_eq!(everything(&db.pool).await, (Vec::new(), Vec::new()));
}

//! The event handlers against a real, fresh PostgreSQL database
//! (`ORDERFLOW_TEST_DATABASE_URL`, default the local server): stock moves,
//! idempotency, and no overselling under concurrent orders.

use std::time::Duration;

use inventory_service::handlers::OnSagaEvents;
use inventory_service::MIGRATOR;
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{
    Address, OrderCancelled, OrderCreated, OrderLine, PaymentFailed, ShippingDispatched,
};
use orderflow_events::testing::{admin_database_url, apply, consumed, TestDatabase};
use orderflow_events::TopicCatalog;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

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
    migrator.run(&db.pool).await.expect("inventory migrations");
    db
}

fn order(order_id: &str, lines: &[(&str, i32)]) -> ConsumedEvent {
    let items = lines
        .iter()
        .map(|(sku, quantity)| OrderLine {
            sku: (*sku).into(),
            quantity: *quantity,
            unit_price: 100,
        })
        .collect();
    consumed(
        OrderCreated {
            order_id: order_id.into(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
            currency: "EUR".into(),
            items,
            total: 100,
            shipping_address: Address {
                name: "Ann".into(),
                line1: "Main St 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            payment_token: None,
            payment_method_id: Some("pm_0123456789abcdef0123456789abcdef".into()),
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

fn payment_failed(order_id: &str) -> ConsumedEvent {
    consumed(
        PaymentFailed {
            order_id: order_id.into(),
            payment_id: uuid::Uuid::new_v4().to_string(),
            amount: 100,
            currency: "EUR".into(),
            reason: "Your card was declined.".into(),
            decline_code: "card_declined".into(),
        },
        order_id,
    )
}

fn dispatched(order_id: &str) -> ConsumedEvent {
    consumed(
        ShippingDispatched {
            order_id: order_id.into(),
            shipment_id: "s-1".into(),
            tracking_number: "T-1".into(),
            dispatched_at: 0,
        },
        order_id,
    )
}

/// Runs `handler` in its own committed transaction, as the consumer does.
async fn set_stock(pool: &PgPool, sku: &str, available: i32) {
    let mut conn = pool.acquire().await.expect("conn");
    inventory_service::db::set_available(&mut conn, sku, available, None)
        .await
        .expect("set stock");
}

async fn levels(pool: &PgPool, sku: &str) -> (i32, i32, i32) {
    sqlx::query_as("SELECT available, reserved, shipped FROM stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(pool)
        .await
        .expect("stock row")
}

async fn status(pool: &PgPool, order_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .expect("reservation")
}

/// Event types in the outbox for `order_id`, oldest first.
async fn emitted(pool: &PgPool, order_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM outbox WHERE partition_key = $1 ORDER BY id")
        .bind(order_id)
        .fetch_all(pool)
        .await
        .expect("outbox")
}

fn inventory() -> OnSagaEvents {
    OnSagaEvents {
        catalog: TopicCatalog::with_prefix(""),
    }
}

#[tokio::test]
async fn reserve_then_release_on_payment_failure_once() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "A", 5).await;
    set_stock(pool, "B", 5).await;
    let created = inventory();
    apply(
        pool,
        &created,
        &order("o-1", &[("A", 2), ("B", 1), ("A", 1)]),
    )
    .await;
    assert_eq!(levels(pool, "A").await, (2, 3, 0));
    assert_eq!(levels(pool, "B").await, (4, 1, 0));
    assert_eq!(status(pool, "o-1").await.as_deref(), Some("RESERVED"));

    // The same order again (a new event id, so the inbox would not stop it).
    apply(
        pool,
        &created,
        &order("o-1", &[("A", 2), ("B", 1), ("A", 1)]),
    )
    .await;
    assert_eq!(levels(pool, "A").await, (2, 3, 0));

    apply(pool, &inventory(), &payment_failed("o-1")).await;
    apply(pool, &inventory(), &cancelled("o-1")).await;
    apply(pool, &inventory(), &dispatched("o-1")).await;
    assert_eq!(levels(pool, "A").await, (5, 0, 0));
    assert_eq!(levels(pool, "B").await, (5, 0, 0));
    assert_eq!(status(pool, "o-1").await.as_deref(), Some("RELEASED"));
    assert_eq!(
        emitted(pool, "o-1").await,
        ["InventoryReserved", "InventoryReleased"]
    );
    let reason: String = sqlx::query_scalar(
        "SELECT envelope->'data'->>'reason' FROM outbox WHERE event_type = 'InventoryReleased'",
    )
    .fetch_one(pool)
    .await
    .expect("released event");
    assert_eq!(reason, "payment failed: Your card was declined.");
}

#[tokio::test]
async fn a_short_or_unknown_sku_reserves_nothing() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "SKU-1", 1).await;
    set_stock(pool, "SKU-2", 10).await;
    let created = inventory();
    apply(
        pool,
        &created,
        &order("o-2", &[("SKU-2", 3), ("SKU-1", 2), ("SKU-9", 1)]),
    )
    .await;
    assert_eq!(levels(pool, "SKU-1").await, (1, 0, 0));
    assert_eq!(levels(pool, "SKU-2").await, (10, 0, 0));
    assert_eq!(status(pool, "o-2").await.as_deref(), Some("FAILED"));
    let data: serde_json::Value = sqlx::query_scalar(
        "SELECT envelope->'data' FROM outbox WHERE event_type = 'InventoryReservationFailed'",
    )
    .fetch_one(pool)
    .await
    .expect("failure event");
    assert_eq!(
        data["reason"],
        "insufficient stock for SKU-1 (requested 2, available 1); unknown SKU SKU-9"
    );
    assert_eq!(data["skus"], serde_json::json!(["SKU-1", "SKU-9"]));

    // A cancellation of a failed reservation gives nothing back.
    apply(pool, &inventory(), &cancelled("o-2")).await;
    assert_eq!(levels(pool, "SKU-1").await, (1, 0, 0));
    assert_eq!(emitted(pool, "o-2").await, ["InventoryReservationFailed"]);
}

#[tokio::test]
async fn dispatch_ships_the_reserved_units_and_cancellation_then_does_nothing() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "A", 3).await;
    apply(pool, &inventory(), &order("o-3", &[("A", 2)])).await;
    apply(pool, &inventory(), &dispatched("o-3")).await;
    assert_eq!(levels(pool, "A").await, (1, 0, 2));
    assert_eq!(status(pool, "o-3").await.as_deref(), Some("SHIPPED"));
    apply(pool, &inventory(), &cancelled("o-3")).await;
    assert_eq!(levels(pool, "A").await, (1, 0, 2));
    // A PUT afterwards sets `available` only.
    set_stock(pool, "A", 10).await;
    assert_eq!(levels(pool, "A").await, (10, 0, 2));
    assert_eq!(emitted(pool, "o-3").await, ["InventoryReserved"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_never_oversell() {
    let db = setup().await;
    set_stock(&db.pool, "HOT", 50).await;
    // A pool of its own, wide enough for many handlers to race.
    let options: PgConnectOptions = admin_database_url().parse().expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.database(&db.name))
        .await
        .expect("pool");
    let tasks = (0..200).map(|i| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let handler = inventory();
            apply(&pool, &handler, &order(&format!("hot-{i}"), &[("HOT", 1)])).await;
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.expect("handler task");
    }
    assert_eq!(levels(&pool, "HOT").await, (0, 50, 0));
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status")
            .fetch_all(&pool)
            .await
            .expect("counts");
    assert_eq!(
        counts,
        [("FAILED".to_owned(), 150), ("RESERVED".to_owned(), 50)]
    );
    let reserved_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'InventoryReserved'")
            .fetch_one(&pool)
            .await
            .expect("outbox count");
    assert_eq!(reserved_events, 50);
    pool.close().await;
}

/// Applies `events` as one consumer batch, in one transaction committed
/// only when every record applied.
async fn apply_batch(pool: &PgPool, events: &[ConsumedEvent]) -> Result<(), (usize, HandlerError)> {
    let span = tracing::Span::none();
    let batch: Vec<(&ConsumedEvent, &tracing::Span)> = events.iter().map(|e| (e, &span)).collect();
    let mut tx = pool.begin().await.expect("begin");
    inventory().handle_batch(&mut tx, &batch).await?;
    tx.commit().await.expect("commit");
    Ok(())
}

type Stock = Vec<(String, i32, i32, i32)>;
type Reservations = Vec<(String, String, Option<String>)>;
type Outbox = Vec<(String, String, serde_json::Value)>;

/// Every stock row, reservation and queued event (key, type, data).
async fn everything(pool: &PgPool) -> (Stock, Reservations, Outbox) {
    let stock = sqlx::query_as("SELECT sku, available, reserved, shipped FROM stock ORDER BY sku")
        .fetch_all(pool)
        .await
        .expect("stock");
    let reservations =
        sqlx::query_as("SELECT order_id, status, reason FROM reservations ORDER BY order_id")
            .fetch_all(pool)
            .await
            .expect("reservations");
    let outbox = sqlx::query_as(
        "SELECT partition_key, event_type, envelope->'data' FROM outbox ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("outbox");
    (stock, reservations, outbox)
}

#[tokio::test]
async fn a_batch_ends_as_its_records_applied_one_by_one() {
    let records = [
        order("o-1", &[("A", 2), ("B", 1)]),
        // Only 1 A is left: fails.
        order("o-2", &[("A", 2)]),
        cancelled("o-1"),
        // o-1's units are back: fits.
        order("o-3", &[("A", 3), ("B", 4)]),
        dispatched("o-3"),
        // Nothing held for these.
        payment_failed("o-2"),
        dispatched("o-1"),
        // o-1 again under a new event id: already has a reservation.
        order("o-1", &[("A", 1)]),
        order("o-4", &[("B", 1)]),
    ];
    let (batched, single) = (setup().await, setup().await);
    for db in [&batched, &single] {
        set_stock(&db.pool, "A", 3).await;
        set_stock(&db.pool, "B", 5).await;
    }
    apply_batch(&batched.pool, &records).await.expect("batch");
    for record in &records {
        apply(&single.pool, &inventory(), record).await;
    }
    let state = everything(&batched.pool).await;
    assert_eq!(state, everything(&single.pool).await);
    let (stock, reservations, outbox) = state;
    assert_eq!(
        stock,
        [("A".to_owned(), 0, 0, 3), ("B".to_owned(), 0, 1, 4)]
    );
    let statuses: Vec<(&str, &str)> = reservations
        .iter()
        .map(|(id, status, _)| (id.as_str(), status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("o-1", "RELEASED"),
            ("o-2", "FAILED"),
            ("o-3", "SHIPPED"),
            ("o-4", "RESERVED")
        ]
    );
    let types: Vec<(&str, &str)> = outbox
        .iter()
        .map(|(key, t, _)| (key.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("o-1", "InventoryReserved"),
            ("o-2", "InventoryReservationFailed"),
            ("o-1", "InventoryReleased"),
            ("o-3", "InventoryReserved"),
            ("o-4", "InventoryReserved")
        ]
    );
}

#[tokio::test]
async fn a_batch_names_its_malformed_record_and_writes_nothing() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "A", 5).await;
    let before = everything(pool).await;
    let records = [
        order("o-1", &[("A", 1)]),
        order("o-2", &[("A", 0)]),
        cancelled("o-1"),
    ];
    let (at, e) = apply_batch(pool, &records)
        .await
        .expect_err("a malformed record");
    assert_eq!(at, 1);
    assert!(
        matches!(&e, HandlerError::Permanent(m) if m.contains("items[0] (A) has quantity 0")),
        "{e}"
    );
    assert_eq!(everything(pool).await, before);
}

#[tokio::test]
async fn a_write_that_breaks_a_stock_constraint_is_retried_alone() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "A", 5).await;
    apply(pool, &inventory(), &order("o-1", &[("A", 2)])).await;
    // Stock taken away behind the reservation's back: releasing the held
    // units would make `reserved` negative.
    sqlx::query("UPDATE stock SET reserved = 0 WHERE sku = 'A'")
        .execute(pool)
        .await
        .expect("corrupt the stock row");
    let before = everything(pool).await;
    let records = [order("o-2", &[("A", 1)]), cancelled("o-1")];
    let (at, e) = apply_batch(pool, &records)
        .await
        .expect_err("a CHECK violation");
    // Which record broke it is unknown: the first is tried alone.
    assert_eq!(at, 0);
    assert!(
        matches!(&e, HandlerError::Retryable(m) if m.contains("applied alone")),
        "{e}"
    );
    assert_eq!(everything(pool).await, before);
    // Alone, the innocent record applies and the guilty one is permanent.
    apply_batch(pool, &records[..1]).await.expect("o-2 alone");
    let (at, e) = apply_batch(pool, &records[1..])
        .await
        .expect_err("o-1 alone");
    assert_eq!(at, 0);
    assert!(matches!(e, HandlerError::Permanent(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_never_oversell_or_deadlock() {
    let db = setup().await;
    for sku in ["HOT-A", "HOT-B", "HOT-C"] {
        set_stock(&db.pool, sku, 60).await;
    }
    let options: PgConnectOptions = admin_database_url().parse().expect("url");
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options.database(&db.name))
        .await
        .expect("pool");
    // 8 "partitions", each 5 batches of 10 orders naming the SKUs in a
    // different order, and each batch cancelling the order 0 of the batch
    // before it: 400 orders of one unit of each SKU against 60 units.
    let tasks = (0..8).map(|p| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let skus = [["HOT-A", "HOT-B", "HOT-C"], ["HOT-C", "HOT-B", "HOT-A"]][p % 2];
            for b in 0..5 {
                let mut batch: Vec<ConsumedEvent> = (0..10)
                    .map(|i| {
                        let lines: Vec<(&str, i32)> = skus.iter().map(|s| (*s, 1)).collect();
                        order(&format!("p{p}-b{b}-{i}"), &lines)
                    })
                    .collect();
                if b > 0 {
                    batch.push(cancelled(&format!("p{p}-b{}-0", b - 1)));
                }
                apply_batch(&pool, &batch)
                    .await
                    .unwrap_or_else(|(at, e)| panic!("batch {p}/{b} failed at {at}: {e}"));
            }
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.expect("batch task");
    }
    let (stock, reservations, _) = everything(&pool).await;
    let held = reservations.iter().filter(|r| r.1 == "RESERVED").count();
    let released = reservations.iter().filter(|r| r.1 == "RELEASED").count();
    assert_eq!(reservations.len(), 400);
    let failed = reservations.iter().filter(|r| r.1 == "FAILED").count();
    assert_eq!(held + released + failed, 400);
    // At most 35 cancellations give units back: most orders found none.
    assert!(failed >= 400 - 60 - 35, "{failed} failed");
    assert_eq!(stock.len(), 3);
    for (sku, available, reserved, shipped) in stock {
        // Each held order holds one unit of each SKU, and nothing else does.
        assert_eq!(usize::try_from(reserved).expect("≥ 0"), held, "{sku} held");
        assert_eq!((available + reserved, shipped), (60, 0), "{sku} conserved");
    }
    pool.close().await;
}

#[tokio::test]
async fn a_reservation_passes_the_payment_method_on_and_no_card_token() {
    let db = setup().await;
    let pool = &db.pool;
    set_stock(pool, "PM", 3).await;
    apply(pool, &inventory(), &order("o-pm", &[("PM", 1)])).await;
    let data: serde_json::Value = sqlx::query_scalar(
        "SELECT envelope->'data' FROM outbox WHERE partition_key = 'o-pm' \
         AND event_type = 'InventoryReserved'",
    )
    .fetch_one(pool)
    .await
    .expect("InventoryReserved queued");
    assert_eq!(
        data["paymentMethodId"],
        "pm_0123456789abcdef0123456789abcdef"
    );
    assert_eq!(data["paymentToken"], serde_json::Value::Null);
}

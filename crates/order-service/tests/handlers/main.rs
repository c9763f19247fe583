//! Handler and store tests against a real PostgreSQL database: each test gets
//! a fresh database on the server of `ORDERFLOW_TEST_DATABASE_URL` (default
//! the local one), dropped afterwards.

use std::collections::BTreeMap;

use chrono::{TimeDelta, Utc};
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::*;
use orderflow_events::inbox::Origin;
use orderflow_events::testing::TestDatabase;
use orderflow_events::trace_context::TraceContext;
use orderflow_events::{Envelope, Event, TopicCatalog};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use order_service::db::{self, Inserted, NewOrder, OrderRow, StoreError};
use order_service::domain::saga::Status;
use order_service::handlers::{OnInventoryAdjusted, OnSagaEvents, ORDER_CONFIRMATION};

/// Creates `order` with its first event `created` (timeline and outbox) in
/// one statement, as the service's writer does; `false` when another order
/// already holds its idempotency key (nothing is written then).
async fn create_order(
    conn: &mut sqlx::PgConnection,
    topics: &TopicCatalog,
    o: &OrderRow,
    created: &Envelope,
    trace: Option<&TraceContext>,
) -> Result<bool, StoreError> {
    let inserted = NewOrder::new(topics, o.clone(), created, trace)?
        .insert(conn)
        .await?;
    assert_ne!(
        inserted,
        Inserted::Stale,
        "the test orders are priced right"
    );
    Ok(inserted == Inserted::Created)
}

/// A fresh database with the service's tables, and `SKU-1` in the
/// catalogue at 1.00 EUR (the price of [`order_row`]'s line).
async fn database() -> TestDatabase {
    let db = TestDatabase::new().await;
    let mut m = sqlx::migrate!();
    m.set_ignore_missing(true);
    m.run(&db.pool).await.expect("order migrations");
    let mut conn = db.pool.acquire().await.expect("conn");
    db::upsert_catalog(
        &mut conn,
        "SKU-1",
        &db::CatalogEntry {
            available: 1_000,
            price: Some(100),
            currency: Some("EUR".into()),
        },
        Utc::now(),
    )
    .await
    .expect("catalogue");
    db
}

async fn new_order(pool: &PgPool) -> (OrderRow, Envelope) {
    let (order, created) = order_row(None);
    let mut conn = pool.acquire().await.expect("conn");
    assert!(create_order(
        &mut conn,
        &TopicCatalog::with_prefix(""),
        &order,
        &created,
        Some(&TraceContext::new_root()),
    )
    .await
    .expect("create"));
    (order, created)
}

/// A new order (not written) and its `OrderCreated`.
fn order_row(idempotency_key: Option<String>) -> (OrderRow, Envelope) {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let order = OrderRow {
        id,
        status: Status::Pending,
        reason: None,
        reason_code: None,
        customer_id: "c-db".into(),
        email: "db@example.com".into(),
        currency: "EUR".into(),
        items: Json(vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price: 100,
        }]),
        total: 200,
        shipping_address: Json(Address {
            name: "A".into(),
            line1: "L".into(),
            line2: None,
            city: "C".into(),
            postal_code: "P".into(),
            country: "DE".into(),
        }),
        payment_token: None,
        payment_method_id: Some("pm_0123456789abcdef0123456789abcdef".into()),
        reserved: false,
        paid: false,
        payment_id: None,
        shipping_created: false,
        tracking_number: None,
        notified: false,
        dispatched: false,
        delivered: false,
        metadata: Json(BTreeMap::from([("userId".to_owned(), "u-1".to_owned())])),
        idempotency_key,
        request_hash: None,
        created_at: now,
        updated_at: now,
        deadline_at: now + TimeDelta::minutes(5),
        stalled_at: None,
        cancel_from: None,
    };
    let created = Envelope::new(
        order_service::SOURCE,
        id.to_string(),
        OrderCreated {
            order_id: id.to_string(),
            customer_id: order.customer_id.clone(),
            email: order.email.clone(),
            currency: "EUR".into(),
            items: order.items.0.clone(),
            total: 200,
            shipping_address: order.shipping_address.0.clone(),
            payment_token: None,
            payment_method_id: order.payment_method_id.clone(),
        },
    )
    .with_metadata("userId", "u-1");
    (order, created)
}

/// `event`, caused by `cause`, as the consumer hands it to a handler.
fn consumed(cause: &Envelope, event: Event) -> ConsumedEvent {
    ConsumedEvent {
        envelope: Envelope::caused_by(cause, "test", event),
        origin: Origin {
            topic: "t".into(),
            partition: 0,
            offset: 0,
        },
        key: None,
        trace: Some(TraceContext::new_root()),
    }
}

async fn deliver(
    pool: &PgPool,
    handler: &dyn Handler,
    cause: &Envelope,
    event: Event,
) -> Result<Envelope, HandlerError> {
    let consumed = consumed(cause, event);
    let envelope = consumed.envelope.clone();
    let mut tx = pool.begin().await.expect("tx");
    handler.handle(&mut tx, &consumed).await?;
    tx.commit().await.expect("commit");
    Ok(envelope)
}

async fn order(pool: &PgPool, id: Uuid) -> OrderRow {
    let mut c = pool.acquire().await.expect("conn");
    db::fetch_order(&mut c, id, false)
        .await
        .expect("fetch")
        .expect("exists")
}

async fn emitted(pool: &PgPool, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM outbox WHERE partition_key = $1 ORDER BY id")
        .bind(id.to_string())
        .fetch_all(pool)
        .await
        .expect("outbox")
}

fn handler() -> OnSagaEvents {
    OnSagaEvents {
        topics: TopicCatalog::with_prefix(""),
        timeout: TimeDelta::minutes(5),
    }
}

/// `InventoryReserved` for the order `o` (as `order_row` makes them).
fn reserved_event(o: &OrderRow) -> Event {
    InventoryReserved {
        order_id: o.id.to_string(),
        items: stock("SKU-1"),
        customer_id: "c-db".into(),
        email: "db@example.com".into(),
        total: 200,
        currency: "EUR".into(),
        payment_token: None,
        shipping_address: o.shipping_address.0.clone(),
        payment_method_id: o.payment_method_id.clone(),
    }
    .into()
}

/// `PaymentProcessed` for the order `o` with `payment_id`.
fn paid_event(o: &OrderRow, payment_id: String) -> Event {
    PaymentProcessed {
        order_id: o.id.to_string(),
        payment_id,
        amount: 200,
        currency: "EUR".into(),
        customer_id: "c-db".into(),
        email: "db@example.com".into(),
        shipping_address: o.shipping_address.0.clone(),
        items: stock("SKU-1"),
    }
    .into()
}

fn stock(sku: &str) -> Vec<StockLine> {
    vec![StockLine {
        sku: sku.into(),
        quantity: 2,
    }]
}

#[tokio::test]
async fn out_of_order_facts_drive_the_saga_to_delivered() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (o, created) = new_order(&pool).await;
    let oid = o.id.to_string();
    // Payment overtakes the reservation.
    let paid = deliver(&pool, &h, &created, paid_event(&o, "pay-1".into()))
        .await
        .expect("paid");
    assert_eq!(order(&pool, o.id).await.status, Status::Pending);
    let reserved = deliver(&pool, &h, &created, reserved_event(&o))
        .await
        .expect("reserved");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Paid);
    assert_eq!(row.payment_id.as_deref(), Some("pay-1"));
    assert!(row.deadline_at > o.deadline_at);
    let shipping = deliver(
        &pool,
        &h,
        &paid,
        ShippingCreated {
            order_id: oid.clone(),
            shipment_id: "s-1".into(),
            tracking_number: "TRK1".into(),
            carrier: "DHL".into(),
            label_url: "http://x".into(),
            email: "db@example.com".into(),
            recipient_name: "A".into(),
            items: stock("SKU-1"),
        }
        .into(),
    )
    .await
    .expect("shipping");
    assert_eq!(order(&pool, o.id).await.status, Status::ShippingCreated);
    deliver(
        &pool,
        &h,
        &shipping,
        ShippingDispatched {
            order_id: oid.clone(),
            shipment_id: "s-1".into(),
            tracking_number: "TRK1".into(),
            dispatched_at: 0,
        }
        .into(),
    )
    .await
    .expect("dispatched");
    deliver(
        &pool,
        &h,
        &shipping,
        ShippingDelivered {
            order_id: oid.clone(),
            shipment_id: "s-1".into(),
            tracking_number: "TRK1".into(),
            delivered_at: 0,
        }
        .into(),
    )
    .await
    .expect("delivered");
    assert_eq!(order(&pool, o.id).await.status, Status::ShippingCreated);
    deliver(
        &pool,
        &h,
        &shipping,
        NotificationSent {
            order_id: oid.clone(),
            notification_id: "n-1".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "db@example.com".into(),
            subject: "s".into(),
        }
        .into(),
    )
    .await
    .expect("notified");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Delivered);
    assert_eq!(row.tracking_number.as_deref(), Some("TRK1"));
    assert_eq!(
        emitted(&pool, o.id).await,
        vec![
            "OrderCreated",
            "OrderConfirmed",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    // OrderConfirmed is caused by the reservation that completed it and
    // carries the metadata of the saga.
    let (cause, md): (String, serde_json::Value) = sqlx::query_as(
        "SELECT envelope->>'causationId', envelope->'metadata' FROM outbox \
         WHERE partition_key = $1 AND event_type = 'OrderConfirmed'",
    )
    .bind(&oid)
    .fetch_one(&pool)
    .await
    .expect("confirmed");
    assert_eq!(cause, reserved.event_id.to_string());
    assert_eq!(md["userId"], "u-1");
    let mut c = pool.acquire().await.expect("conn");
    let tl = order_service::domain::timeline::causal_order(
        db::timeline(&mut c, o.id).await.expect("tl"),
    );
    assert_eq!(tl.len(), 10);
    assert_eq!(tl[0].event_type, "OrderCreated");
}

#[tokio::test]
async fn failures_cancel_and_later_facts_only_reach_the_timeline() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (o, created) = new_order(&pool).await;
    let oid = o.id.to_string();
    deliver(
        &pool,
        &h,
        &created,
        InventoryReservationFailed {
            order_id: oid.clone(),
            reason: "out of stock: SKU-1".into(),
            skus: vec!["SKU-1".into()],
        }
        .into(),
    )
    .await
    .expect("failed");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Cancelled);
    assert_eq!(row.reason_code.as_deref(), Some("OUT_OF_STOCK"));
    assert_eq!(row.reason.as_deref(), Some("out of stock: SKU-1"));
    deliver(
        &pool,
        &h,
        &created,
        PaymentFailed {
            order_id: oid.clone(),
            payment_id: "p".into(),
            amount: 1,
            currency: "EUR".into(),
            reason: "card declined".into(),
            decline_code: "card_declined".into(),
        }
        .into(),
    )
    .await
    .expect("timeline only");
    let row = order(&pool, o.id).await;
    assert_eq!(row.reason_code.as_deref(), Some("OUT_OF_STOCK"));
    assert_eq!(
        emitted(&pool, o.id).await,
        vec!["OrderCreated", "OrderCancelled"]
    );
    let data: serde_json::Value = sqlx::query_scalar(
        "SELECT envelope->'data' FROM outbox WHERE partition_key = $1 AND event_type = 'OrderCancelled'",
    )
    .bind(&oid)
    .fetch_one(&pool)
    .await
    .expect("cancelled");
    assert_eq!(data["previousStatus"], "PENDING");
    assert_eq!(data["reasonCode"], "OUT_OF_STOCK");
    let mut c = pool.acquire().await.expect("conn");
    assert_eq!(db::timeline(&mut c, o.id).await.expect("tl").len(), 4);

    // Payment decline on another order.
    let (o2, created2) = new_order(&pool).await;
    deliver(
        &pool,
        &h,
        &created2,
        PaymentFailed {
            order_id: o2.id.to_string(),
            payment_id: "p".into(),
            amount: 1,
            currency: "EUR".into(),
            reason: "card declined".into(),
            decline_code: "card_declined".into(),
        }
        .into(),
    )
    .await
    .expect("declined");
    let row = order(&pool, o2.id).await;
    assert_eq!(row.status, Status::Cancelled);
    assert_eq!(row.reason_code.as_deref(), Some("PAYMENT_DECLINED"));
}

#[tokio::test]
async fn unknown_orders_are_permanent_errors_and_the_catalogue_keeps_the_latest() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (_, created) = new_order(&pool).await;
    let err = deliver(
        &pool,
        &h,
        &created,
        InventoryReleased {
            order_id: Uuid::now_v7().to_string(),
            items: vec![],
            reason: "x".into(),
        }
        .into(),
    )
    .await
    .expect_err("unknown");
    assert!(matches!(err, HandlerError::Permanent(_)), "{err:?}");

    let sku = format!("SKU-{}", Uuid::now_v7().simple());
    let first = deliver(
        &pool,
        &OnInventoryAdjusted,
        &created,
        InventoryAdjusted {
            sku: sku.clone(),
            available: 5,
            reserved: 0,
            price: None,
            currency: None,
        }
        .into(),
    )
    .await
    .expect("adjusted");
    let mut later = Envelope::caused_by(
        &first,
        "test",
        InventoryAdjusted {
            sku: sku.clone(),
            available: 7,
            reserved: 0,
            price: Some(1999),
            currency: Some("EUR".into()),
        },
    );
    later.timestamp = first.timestamp + TimeDelta::seconds(1);
    let mut c = pool.acquire().await.expect("conn");
    let newer = db::CatalogEntry {
        available: 7,
        price: Some(1999),
        currency: Some("EUR".into()),
    };
    let older = db::CatalogEntry {
        available: 1,
        price: None,
        currency: None,
    };
    db::upsert_catalog(&mut c, &sku, &newer, later.timestamp)
        .await
        .expect("newer");
    db::upsert_catalog(&mut c, &sku, &older, first.timestamp)
        .await
        .expect("older");
    assert_eq!(
        db::catalog_entry(&mut c, &sku).await.expect("entry"),
        Some(newer)
    );
}

mod batch;
mod cancel;
mod create;

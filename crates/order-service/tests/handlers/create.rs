//! New orders: concurrent ones share a commit, a failing one fails alone,
//! and an order is written only at the catalogue's current prices.

use super::*;

/// `sql`'s one count.
async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn concurrent_new_orders_commit_together_and_keys_stay_unique() {
    let db = database().await;
    let writer = order_service::db::writer::OrderWriter::spawn(db.pool.clone());
    let topics = TopicCatalog::with_prefix("");
    // 40 requests, two per idempotency key.
    let orders: Vec<std::sync::Arc<db::NewOrder>> = (0..40)
        .map(|i| {
            let (order, created) = order_row(Some(format!("key-{}", i % 20)));
            std::sync::Arc::new(
                db::NewOrder::new(&topics, order, &created, None).expect("new order"),
            )
        })
        .collect();
    // On this single-threaded runtime every order is queued before a lane
    // runs, so one lane takes them all.
    let outcomes = futures::future::join_all(orders.into_iter().map(|o| writer.create(o))).await;
    let inserted: Vec<Inserted> = outcomes.into_iter().map(|o| o.expect("write")).collect();
    assert_eq!(
        &inserted[..20],
        &[Inserted::Created; 20],
        "the first use of each key"
    );
    assert_eq!(
        &inserted[20..],
        &[Inserted::KeyTaken; 20],
        "the second use of each key"
    );

    assert_eq!(count(&db.pool, "SELECT count(*) FROM orders").await, 20);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_timeline").await,
        20
    );
    assert_eq!(count(&db.pool, "SELECT count(*) FROM outbox").await, 20);
    assert_eq!(
        count(&db.pool, "SELECT count(DISTINCT xmin::text) FROM orders").await,
        1,
        "the orders were committed in one transaction"
    );
}

#[tokio::test]
async fn a_failing_order_fails_alone_in_a_batch() {
    let db = database().await;
    let writer = order_service::db::writer::OrderWriter::spawn(db.pool.clone());
    let topics = TopicCatalog::with_prefix("");
    let (taken, created) = order_row(None);
    let mut conn = db.pool.acquire().await.expect("conn");
    assert_eq!(
        db::NewOrder::new(&topics, taken.clone(), &created, None)
            .expect("new order")
            .insert(&mut conn)
            .await
            .expect("first write"),
        Inserted::Created
    );
    drop(conn);
    // The second order reuses the first one's id: its insert fails (not an
    // idempotency key conflict), and rolls back the batch it is in.
    let mut orders = Vec::new();
    for i in 0..9 {
        let (mut order, created) = order_row(Some(format!("k-{i}")));
        if i == 1 {
            order.id = taken.id;
        }
        orders.push(std::sync::Arc::new(
            db::NewOrder::new(&topics, order, &created, None).expect("new order"),
        ));
    }
    let outcomes = futures::future::join_all(orders.into_iter().map(|o| writer.create(o))).await;
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (1, Err(db::StoreError::Database(sqlx::Error::Database(e)))) => {
                assert!(e.is_unique_violation(), "{e}")
            }
            (1, other) => panic!("the order with a taken id: {other:?}"),
            (_, Ok(Inserted::Created)) => {}
            (i, other) => panic!("order {i}: {other:?}"),
        }
    }
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM orders").await,
        9,
        "the first order and the eight others"
    );
}

#[tokio::test]
async fn an_order_is_written_only_at_the_catalogues_current_prices() {
    let db = database().await;
    let topics = TopicCatalog::with_prefix("");
    let mut conn = db.pool.acquire().await.expect("conn");
    let insert = |order: OrderRow, created: Envelope| {
        let (topics, pool) = (topics.clone(), db.pool.clone());
        async move {
            NewOrder::new(&topics, order, &created, None)
                .expect("new order")
                .insert(&mut pool.acquire().await.expect("conn"))
                .await
                .expect("insert")
        }
    };
    let priced = |price: i64, currency: &str, sku: &str, key: Option<&str>| {
        let (mut order, created) = order_row(key.map(str::to_owned));
        order.items.0[0].unit_price = price;
        order.items.0[0].sku = sku.to_owned();
        order.currency = currency.to_owned();
        (order, created)
    };

    // An old price, another currency, a SKU the catalogue does not have:
    // nothing is written.
    for (price, currency, sku) in [
        (99, "EUR", "SKU-1"),
        (100, "GBP", "SKU-1"),
        (100, "EUR", "SKU-NEW"),
    ] {
        let (order, created) = priced(price, currency, sku, Some("k-1"));
        assert_eq!(
            insert(order, created).await,
            Inserted::Stale,
            "{price} {currency} {sku}"
        );
    }
    assert_eq!(count(&db.pool, "SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_timeline").await,
        0
    );
    assert_eq!(count(&db.pool, "SELECT count(*) FROM outbox").await, 0);

    // Two lines of one SKU at two prices cannot both be the catalogue's.
    let (mut order, created) = priced(100, "EUR", "SKU-1", None);
    let mut second = order.items.0[0].clone();
    second.unit_price = 99;
    order.items.0.push(second);
    assert_eq!(insert(order, created).await, Inserted::Stale);

    // The current price: written; the key again: taken.
    let (order, created) = priced(100, "EUR", "SKU-1", Some("k-1"));
    assert_eq!(insert(order, created).await, Inserted::Created);
    let (order, created) = priced(100, "EUR", "SKU-1", Some("k-1"));
    assert_eq!(insert(order, created).await, Inserted::KeyTaken);

    // The price changes: the old one is refused, the new one written.
    db::upsert_catalog(
        &mut conn,
        "SKU-1",
        &db::CatalogEntry {
            available: 1_000,
            price: Some(250),
            currency: Some("EUR".into()),
        },
        Utc::now() + TimeDelta::seconds(1),
    )
    .await
    .expect("new price");
    let (order, created) = priced(100, "EUR", "SKU-1", Some("k-2"));
    assert_eq!(insert(order, created).await, Inserted::Stale);
    let (order, created) = priced(250, "EUR", "SKU-1", Some("k-2"));
    assert_eq!(insert(order, created).await, Inserted::Created);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM orders").await, 2);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM outbox").await, 2);
}

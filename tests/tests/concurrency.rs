//! 200 concurrent single-unit orders for one SKU with 50 in stock: exactly
//! 50 succeed, 150 are cancelled as out of stock, and stock never goes
//! negative while they are processed (sampled over HTTP and in the
//! inventory database).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use orderflow_e2e::client::parse_metrics;
use orderflow_e2e::{OrderBody, Service, Stack, Status, TERMINAL};
use orderflow_stack::check::{Accepted, Expected};
use tokio::sync::Semaphore;

const ORDERS: usize = 200;
const STOCK: i64 = 50;

#[derive(Debug, Default)]
struct Samples {
    count: usize,
    min_http_available: Option<i64>,
    min_db_available: Option<i64>,
    violations: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_never_oversell() {
    let stack = Arc::new(Stack::start_default().await);
    let sku = stack.sku("HOT");
    stack.set_stock(&sku, STOCK).await;
    let customer = format!("c-hot-{}", stack.id);

    // Background sampler: stock must never be negative, and units only move
    // between available / reserved / shipped.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let http = stack.http().clone();
        let url = format!("{}/inventory/{sku}", stack.url(Service::Inventory));
        let pool = stack.db(Service::Inventory).await;
        let stop = stop.clone();
        let sku = sku.clone();
        tokio::spawn(async move {
            let mut s = Samples::default();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = http.get(&url).send().await {
                    if let Ok(v) = r.json::<serde_json::Value>().await {
                        if let Some(a) = v["available"].as_i64() {
                            s.min_http_available =
                                Some(s.min_http_available.map_or(a, |m| m.min(a)));
                            if a < 0 {
                                s.violations.push(format!("GET /inventory: {v}"));
                            }
                        }
                    }
                }
                let row = sqlx::query_as::<_, (i64, i64, i64)>(
                    "SELECT available::bigint, reserved::bigint, shipped::bigint FROM stock WHERE sku = $1",
                )
                .bind(&sku)
                .fetch_optional(&pool)
                .await;
                if let Ok(Some((a, r, sh))) = row {
                    s.min_db_available = Some(s.min_db_available.map_or(a, |m| m.min(a)));
                    if a < 0 || r < 0 || sh < 0 || a + r + sh != STOCK {
                        s.violations.push(format!(
                            "stock row: available {a} reserved {r} shipped {sh}"
                        ));
                    }
                }
                s.count += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s
        })
    };

    // One customer, one card: registered once, used by every order.
    let body = stack
        .order_json(&OrderBody::new(&sku, 1).customer(&customer))
        .await;
    let submitted = Instant::now();
    let permits = Arc::new(Semaphore::new(50));
    let tasks: Vec<_> = (0..ORDERS)
        .map(|_| {
            let stack = stack.clone();
            let permits = permits.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore");
                stack.post_order(&body).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for r in futures::future::join_all(tasks).await {
        let r = r.expect("task");
        assert_eq!(r.status, 202, "{}", r.describe());
        ids.push(r.json["orderId"].as_str().expect("orderId").to_owned());
    }
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ORDERS,
        "distinct ids"
    );
    eprintln!(
        "{ORDERS} orders accepted in {:.1}s",
        submitted.elapsed().as_secs_f64()
    );

    // Every order reaches a terminal status.
    let orders: Vec<serde_json::Value> = stack
        .wait_for_within(
            "all orders to be terminal",
            Duration::from_secs(300).max(stack.timeout),
            || async {
                let orders: Vec<serde_json::Value> = futures::stream::iter(ids.iter())
                    .map(|id| {
                        let stack = stack.clone();
                        async move {
                            stack
                                .get(Service::Order, &format!("/orders/{id}"))
                                .await
                                .json
                        }
                    })
                    .buffer_unordered(16)
                    .collect()
                    .await;
                let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
                for o in &orders {
                    *by_status
                        .entry(o["status"].as_str().unwrap_or("?").to_owned())
                        .or_default() += 1;
                }
                let terminal = orders
                    .iter()
                    .filter(|o| TERMINAL.iter().any(|t| o["status"] == t.as_str()))
                    .count();
                if terminal == ORDERS {
                    Ok(orders)
                } else {
                    Err(format!("statuses {by_status:?}"))
                }
            },
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    // And every other promise of the saga, with the checker of the fault
    // campaign and the benchmark.
    stack
        .wait_for_invariants(&Expected {
            accepted: Accepted::Ids(ids.iter().cloned().collect()),
            initial: BTreeMap::from([(sku.clone(), STOCK)]),
            poison: Vec::new(),
            groups: BTreeMap::new(),
        })
        .await;
    eprintln!(
        "all terminal after {:.1}s; sampler: {} samples, min available http {:?} db {:?}",
        submitted.elapsed().as_secs_f64(),
        samples.count,
        samples.min_http_available,
        samples.min_db_available
    );

    let shipped: Vec<_> = orders
        .iter()
        .filter(|o| o["status"] == "SHIPPED" || o["status"] == "DELIVERED")
        .collect();
    let cancelled: Vec<_> = orders
        .iter()
        .filter(|o| o["status"] == "CANCELLED")
        .collect();
    assert_eq!(shipped.len(), STOCK as usize, "shipped orders");
    assert_eq!(cancelled.len(), ORDERS - STOCK as usize, "cancelled orders");
    for o in &cancelled {
        assert_eq!(o["reasonCode"], "OUT_OF_STOCK", "{o}");
    }

    let inv = stack.inventory(&sku).await;
    assert_eq!(inv["available"], 0, "{inv}");
    assert_eq!(inv["reserved"], STOCK, "{inv}");
    assert_eq!(inv["shipped"], 0, "{inv}");
    assert_eq!(stack.stock_row(&sku).await, Some((0, STOCK, 0)));

    assert!(samples.count > 0, "the sampler took no samples");
    assert!(
        samples.violations.is_empty(),
        "stock invariant violated {} time(s): {:?}",
        samples.violations.len(),
        &samples.violations[..samples.violations.len().min(10)]
    );
    assert!(samples.min_http_available.unwrap_or(0) >= 0);
    assert!(samples.min_db_available.unwrap_or(0) >= 0);
}

/// `orderflow_events_failed_total{error="infrastructure"}` of the order
/// service, over every topic and event type: the consumer's transactions
/// that could not start or finish because the database did not answer
/// (including waiting too long for a pooled connection).
async fn infrastructure_failures(stack: &Stack) -> f64 {
    let r = stack.get(Service::Order, "/metrics").await.expect(200);
    parse_metrics(&r.text)
        .into_iter()
        .filter(|(series, _)| {
            series.starts_with("orderflow_events_failed_total{")
                && series.contains(r#"error="infrastructure""#)
        })
        .map(|(_, n)| n)
        .sum()
}

/// The order service's consumers hold every connection of their pool,
/// blocked on a lock, and HTTP requests are still answered from the
/// connections kept for them (`DATABASE_API_CONNECTIONS`); once the lock
/// is gone every order finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_answered_while_the_consumers_hold_every_other_connection() {
    let stack = Stack::start(orderflow_e2e::StackOptions {
        // More consumer workers than connections: the order service has
        // one per consumed topic (four), plus its relay.
        partitions: Some(8),
        database_max_connections: Some(4),
        database_api_connections: Some(1),
        ..Default::default()
    })
    .await;
    let sku = stack.sku("POOL");
    stack.set_stock(&sku, 1000).await;
    let first = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&first, "SHIPPED").await;
    let failures_before = infrastructure_failures(&stack).await;

    // Every consumer transaction of the order service starts by writing
    // the inbox: with the table locked, each one blocks holding its
    // connection, until the rest wait in vain for one.
    let db = stack.db(Service::Order).await;
    let mut lock = db.begin().await.expect("BEGIN");
    sqlx::query("LOCK TABLE inbox IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("LOCK TABLE inbox");
    let mut ids = futures::stream::iter(0..12)
        .map(|i| {
            let stack = &stack;
            let sku = &sku;
            async move { stack.create_order(&OrderBody::new(sku, 1 + i % 2)).await }
        })
        .buffer_unordered(12)
        .collect::<Vec<String>>()
        .await;
    stack
        .wait_for(
            "a consumer transaction to find no free connection",
            || async {
                match infrastructure_failures(&stack).await {
                    n if n > failures_before => Ok(n),
                    n => Err(format!("{n} infrastructure failures")),
                }
            },
        )
        .await;

    // The pool of the consumers and the relay is exhausted, and stays so
    // while the lock is held; requests still get a connection.
    let late = stack.create_order(&OrderBody::new(&sku, 1)).await;
    assert_eq!(stack.order(&late).await.status, Status::Pending);
    stack.get(Service::Order, "/health/ready").await.expect(200);

    lock.rollback().await.expect("ROLLBACK");
    ids.push(late);
    for id in &ids {
        let order = stack.wait_terminal(id).await;
        assert_eq!(order.status, Status::Shipped, "order {id}: {order:?}");
    }
    // 1 + 6 × 1 + 6 × 2 + 1 units, each reserved once (SHIPPED is before
    // dispatch: the units stay reserved).
    stack.wait_for_stock(&sku, 980, 20, Some(0)).await;
}

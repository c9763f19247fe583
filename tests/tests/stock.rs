//! Stock changes that cannot lose a reservation: restocks race 30 orders
//! of one SKU, half of them as relative adjustments
//! (`POST /inventory/{sku}/adjustments`), half as read-modify-write `PUT`s
//! conditional on the `ETag` they read (`If-Match`, retried on 412). Every
//! unit is accounted for afterwards. Also: what a stale `If-Match`, an
//! adjustment below zero and bad input answer, and that they change
//! nothing.

use orderflow_e2e::{OrderBody, Resp, Service, Stack};
use reqwest::Method;
use serde_json::json;

const INITIAL: i64 = 40;
const ORDERS: usize = 30;
/// Restocks by adjustment, each of `ADJUST_BY` units.
const ADJUSTMENTS: i64 = 5;
const ADJUST_BY: i64 = 2;
/// Restocks by conditional `PUT`, each of one unit.
const CONDITIONAL_PUTS: i64 = 5;

async fn put_if_match(stack: &Stack, sku: &str, etag: &str, available: i64) -> Resp {
    orderflow_e2e::client::send(
        stack
            .request(
                Method::PUT,
                Service::Inventory,
                &format!("/inventory/{sku}"),
            )
            .header("If-Match", etag)
            .json(&json!({ "available": available })),
    )
    .await
}

/// Adds one unit with a read-modify-write `PUT` guarded by `If-Match`,
/// reading again after every 412; returns how many 412s it met.
async fn restock_by_one(stack: &Stack, sku: &str) -> usize {
    let mut refused = 0;
    loop {
        let r = stack
            .get(Service::Inventory, &format!("/inventory/{sku}"))
            .await
            .expect(200);
        let etag = r.header("etag").expect("GET answers an ETag").to_owned();
        let available = r.json["available"].as_i64().expect("available");
        let w = put_if_match(stack, sku, &etag, available + 1).await;
        match w.status {
            200 => {
                assert_ne!(w.header("etag"), Some(etag.as_str()), "{}", w.describe());
                return refused;
            }
            412 => {
                assert_eq!(w.code(), "precondition_failed", "{}", w.describe());
                refused += 1;
                assert!(refused < 200, "never got a write in: {}", w.describe());
            }
            _ => panic!("conditional PUT: {}", w.describe()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restocks_racing_reservations_lose_no_unit() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("RESTOCK");
    stack.set_stock(&sku, INITIAL).await;

    let bodies: Vec<OrderBody> = (0..ORDERS).map(|_| OrderBody::new(&sku, 1)).collect();
    let orders = futures::future::join_all(bodies.iter().map(|b| stack.create_order(b)));
    let adjustments = futures::future::join_all((0..ADJUSTMENTS).map(|_| async {
        let r = stack
            .post_json(
                Service::Inventory,
                &format!("/inventory/{sku}/adjustments"),
                &json!({ "delta": ADJUST_BY }),
            )
            .await
            .expect(200);
        assert!(r.header("etag").is_some(), "{}", r.describe());
    }));
    let puts =
        futures::future::join_all((0..CONDITIONAL_PUTS).map(|_| restock_by_one(&stack, &sku)));
    let (ids, _, refused) = tokio::join!(orders, adjustments, puts);
    eprintln!(
        "conditional PUTs refused with 412 and retried: {}",
        refused.iter().sum::<usize>()
    );

    for id in &ids {
        stack.wait_status(id, "SHIPPED").await;
    }
    // Every order holds one unit; every restock is there.
    let total = INITIAL + ADJUSTMENTS * ADJUST_BY + CONDITIONAL_PUTS;
    let reserved = ORDERS as i64;
    stack
        .wait_for_stock(&sku, total - reserved, reserved, Some(0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_or_impossible_stock_changes_are_refused_and_change_nothing() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("GUARD");
    stack.set_stock(&sku, 5).await;
    let path = format!("/inventory/{sku}");
    let before = stack.get(Service::Inventory, &path).await.expect(200);
    let etag = before.header("etag").expect("ETag").to_owned();
    assert_eq!(etag, r#""5.0.0""#, "{}", before.describe());

    // A stale tag: 412 with the current level, nothing written.
    let r = put_if_match(&stack, &sku, r#""4.1.0""#, 100).await;
    assert_eq!(r.status, 412, "{}", r.describe());
    assert_eq!(r.code(), "precondition_failed");
    assert_eq!(r.json["details"]["etag"], etag.as_str(), "{}", r.describe());
    r.expect_json_error();
    // If-Match on a SKU nobody stocked: 412, and the SKU stays unknown.
    let unknown = stack.sku("NEVER");
    let r = put_if_match(&stack, &unknown, "*", 3).await;
    assert_eq!(r.status, 412, "{}", r.describe());
    stack
        .get(Service::Inventory, &format!("/inventory/{unknown}"))
        .await
        .expect(404);

    let adjust = |delta: serde_json::Value, sku: String| {
        let stack = &stack;
        async move {
            stack
                .post_json(
                    Service::Inventory,
                    &format!("/inventory/{sku}/adjustments"),
                    &json!({ "delta": delta }),
                )
                .await
        }
    };
    // More than is available: 409, nothing taken.
    let r = adjust(json!(-6), sku.clone()).await;
    assert_eq!(r.status, 409, "{}", r.describe());
    assert_eq!(r.code(), "insufficient_stock", "{}", r.describe());
    // Taking from a SKU nobody stocked: 404.
    adjust(json!(-1), unknown.clone()).await.expect(404);
    // Bad input: 422 with the field, or 400/422 for a body of the wrong shape.
    for (delta, status) in [
        (json!(0), 422),
        (json!(1_000_000_001), 422),
        (json!("ten"), 422),
        (json!(1.5), 422),
    ] {
        let r = adjust(delta.clone(), sku.clone()).await;
        assert_eq!(r.status, status, "delta {delta}: {}", r.describe());
        r.expect_json_error();
    }
    // Past the largest level: 422.
    adjust(json!(1_000_000_000), sku.clone()).await.expect(422);

    let after = stack.get(Service::Inventory, &path).await.expect(200);
    assert_eq!(after.json, before.json, "{}", after.describe());
    assert_eq!(after.header("etag"), Some(etag.as_str()));

    // The right tag writes, and the new level has a new tag.
    let r = put_if_match(&stack, &sku, &etag, 7).await.expect(200);
    assert_eq!(r.json["available"], 7, "{}", r.describe());
    assert_eq!(r.header("etag"), Some(r#""7.0.0""#), "{}", r.describe());
    // A relative adjustment down, within what is available.
    let r = adjust(json!(-2), sku.clone()).await.expect(200);
    assert_eq!(r.json["available"], 5, "{}", r.describe());
}

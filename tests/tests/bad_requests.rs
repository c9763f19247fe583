//! Bad input gets a clear 4xx JSON error and changes nothing; the
//! Idempotency-Key of POST /orders returns the same order for the same body
//! and refuses a different body.

use orderflow_e2e::{OrderBody, Resp, Service, Stack};
use reqwest::Method;
use serde_json::{json, Value};

async fn raw(
    stack: &Stack,
    method: Method,
    svc: Service,
    path: &str,
    ct: &str,
    body: String,
) -> Resp {
    orderflow_e2e::client::send(
        stack
            .request(method, svc, path)
            .header("content-type", ct)
            .body(body),
    )
    .await
}

#[track_caller]
fn check(r: &Resp, what: &str, status: Option<u16>, code: Option<&str>) {
    r.expect_json_error();
    if let Some(s) = status {
        assert_eq!(r.status, s, "{what}: {}", r.describe());
    }
    if let Some(c) = code {
        assert_eq!(r.code(), c, "{what}: {}", r.describe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_rejected_and_write_nothing() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("VALID");
    stack.set_stock(&sku, 10).await;
    let customer = format!("c-bad-{}", stack.id);
    let valid: Value = stack
        .order_json(&OrderBody::new(&sku, 1).customer(&customer))
        .await;
    let json_ct = "application/json";

    // POST /orders
    let r = raw(
        &stack,
        Method::POST,
        Service::Order,
        "/orders",
        json_ct,
        r#"{"customerId": "#.into(),
    )
    .await;
    check(&r, "malformed JSON", Some(400), Some("malformed_json"));

    let mut unknown_field = valid.clone();
    unknown_field["bogus"] = json!(1);
    let r = stack.post_order(&unknown_field).await;
    check(&r, "unknown field", None, None);

    let mut unknown_sku = valid.clone();
    unknown_sku["items"][0]["sku"] = json!(format!("NOPE-{}", stack.id));
    let r = stack.post_order(&unknown_sku).await;
    check(&r, "unknown SKU", Some(422), Some("unknown_sku"));

    for q in [0, -1] {
        let mut bad = valid.clone();
        bad["items"][0]["quantity"] = json!(q);
        let r = stack.post_order(&bad).await;
        check(&r, &format!("quantity {q}"), Some(422), None);
    }

    // A card token instead of a payment method: refused, naming both.
    let mut card = valid.clone();
    card.as_object_mut()
        .expect("object")
        .remove("paymentMethodId");
    card["paymentToken"] = json!("tok_visa");
    let r = stack.post_order(&card).await;
    check(
        &r,
        "a card token in the order",
        Some(422),
        Some("validation_failed"),
    );
    let fields: Vec<&str> = r.json["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["paymentMethodId", "paymentToken"],
        "{}",
        r.describe()
    );

    for field in ["email", "items", "customerId", "paymentMethodId"] {
        let mut missing = valid.clone();
        missing.as_object_mut().expect("object").remove(field);
        let r = stack.post_order(&missing).await;
        check(&r, &format!("missing {field}"), None, None);
    }

    let mut empty_items = valid.clone();
    empty_items["items"] = json!([]);
    check(
        &stack.post_order(&empty_items).await,
        "no items",
        Some(422),
        None,
    );

    let mut bad_email = valid.clone();
    bad_email["email"] = json!("not-an-address");
    check(
        &stack.post_order(&bad_email).await,
        "bad e-mail",
        Some(422),
        None,
    );

    let mut huge = valid.clone();
    huge["customerId"] = json!("x".repeat(70 * 1024));
    let r = stack.post_order(&huge).await;
    check(&r, "body over 64 KiB", Some(413), None);

    let r = raw(
        &stack,
        Method::POST,
        Service::Order,
        "/orders",
        "text/plain",
        valid.to_string(),
    )
    .await;
    check(&r, "wrong content type", Some(415), None);

    // PUT /inventory
    let bad_sku = stack.sku("NEVER");
    let path = format!("/inventory/{bad_sku}");
    let r = raw(
        &stack,
        Method::PUT,
        Service::Inventory,
        &path,
        json_ct,
        "{".into(),
    )
    .await;
    check(
        &r,
        "inventory: malformed JSON",
        Some(400),
        Some("malformed_json"),
    );
    let r = stack
        .put_json(Service::Inventory, &path, &json!({"available": -1}))
        .await;
    check(&r, "inventory: negative", Some(422), None);
    let r = stack
        .put_json(
            Service::Inventory,
            &path,
            &json!({"available": 5, "bogus": true}),
        )
        .await;
    check(&r, "inventory: unknown field", None, None);
    let r = stack.put_json(Service::Inventory, &path, &json!({})).await;
    check(&r, "inventory: missing field", None, None);
    let r = raw(
        &stack,
        Method::PUT,
        Service::Inventory,
        &path,
        "text/plain",
        r#"{"available": 5}"#.into(),
    )
    .await;
    check(&r, "inventory: wrong content type", Some(415), None);
    let r = stack.get(Service::Inventory, &path).await;
    assert_eq!(
        r.status,
        404,
        "rejected PUTs created the SKU: {}",
        r.describe()
    );
    r.expect_json_error();
    let rows = stack
        .count(
            Service::Inventory,
            "SELECT count(*) FROM stock WHERE sku = $1",
            &bad_sku,
        )
        .await;
    assert_eq!(rows, 0);

    // Nothing was written by the order service (its database is fresh).
    let r = stack
        .get(Service::Order, &format!("/orders?customerId={customer}"))
        .await
        .expect(200);
    assert_eq!(r.json["orders"], json!([]), "{}", r.text);
    let pool = stack.db(Service::Order).await;
    for table in ["orders", "outbox"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(n, 0, "rows in {table} after rejected requests");
    }

    // Idempotency-Key.
    let key = uuid::Uuid::new_v4().to_string();
    let first = stack.post_order_with_key(&valid, &key).await.expect(202);
    let id = first.json["orderId"].as_str().expect("orderId").to_owned();
    let again = stack.post_order_with_key(&valid, &key).await;
    assert!(
        again.status == 200 || again.status == 202,
        "same key, same body: {}",
        again.describe()
    );
    assert_eq!(again.json["orderId"], id.as_str(), "{}", again.describe());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 1, "order rows after two requests with one key");

    let mut different = valid.clone();
    different["items"][0]["quantity"] = json!(2);
    let r = stack.post_order_with_key(&different, &key).await;
    check(
        &r,
        "same key, different body",
        Some(422),
        Some("idempotency_key_reused"),
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 1, "order rows after the reused key");
    let r = stack
        .get(Service::Order, &format!("/orders?customerId={customer}"))
        .await
        .expect(200);
    let listed: Vec<&Value> = r.json["orders"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "{}", r.text);
    assert_eq!(listed[0]["orderId"], id.as_str(), "{}", r.text);
}

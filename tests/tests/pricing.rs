//! Prices belong to the catalog: inventory sets a price per SKU
//! (`PUT /inventory/{sku}` with `price` and `currency`, carried by
//! `InventoryAdjusted`), the order service prices every line from it and
//! computes the total that payment charges. A client's `unitPrice` that
//! differs is refused (409 `price_mismatch`) and creates nothing; so are
//! unpriced SKUs and other currencies (422).

use orderflow_e2e::{OrderBody, Service, Stack};
use serde_json::{json, Value};

/// The order body with `unitPrice` of every line replaced (or removed).
async fn with_unit_price(stack: &Stack, body: &OrderBody, price: Option<Value>) -> Value {
    let mut v = stack.order_json(body).await;
    for item in v["items"].as_array_mut().expect("items") {
        match &price {
            Some(p) => item["unitPrice"] = p.clone(),
            None => {
                item.as_object_mut().expect("item").remove("unitPrice");
            }
        }
    }
    v
}

/// How many orders the customer of `body` has.
async fn orders_of(stack: &Stack, body: &OrderBody) -> usize {
    let r = stack
        .get(
            Service::Order,
            &format!("/orders?customerId={}", body.customer_id),
        )
        .await
        .expect(200);
    r.json["orders"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_catalog_sets_the_price_and_a_client_price_cannot_change_it() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("PRICED");
    stack.set_stock(&sku, 10).await; // 1999 EUR
    let body = OrderBody::new(&sku, 2);

    // The customer picks the price: refused, nothing created.
    for price in [json!(0), json!(1), json!(1998)] {
        let r = stack
            .post_order(&with_unit_price(&stack, &body, Some(price.clone())).await)
            .await;
        assert_eq!(r.status, 409, "unitPrice {price}: {}", r.describe());
        assert_eq!(r.code(), "price_mismatch", "{}", r.describe());
        assert_eq!(
            r.json["details"]["lines"][0]["catalogPrice"],
            1999,
            "{}",
            r.describe()
        );
        r.expect_json_error();
    }
    // Another currency than the catalog's: refused.
    let mut gbp = stack.order_json(&body).await;
    gbp["currency"] = json!("GBP");
    let r = stack.post_order(&gbp).await;
    assert_eq!(r.status, 422, "{}", r.describe());
    assert_eq!(r.code(), "currency_mismatch", "{}", r.describe());
    assert_eq!(
        orders_of(&stack, &body).await,
        0,
        "a refused order was created"
    );

    // No unitPrice: priced from the catalog; payment charges that total.
    let r = stack
        .post_order(&with_unit_price(&stack, &body, None).await)
        .await;
    assert_eq!(r.status, 202, "{}", r.describe());
    let id = r.json["orderId"].as_str().expect("orderId").to_owned();
    let order = stack.wait_status(&id, "SHIPPED").await;
    assert_eq!(order.total, 2 * 1999, "{order:?}");
    assert_eq!(order.items[0].unit_price, 1999, "{order:?}");
    let payment = stack.payment(&id).await.expect(200);
    assert_eq!(payment.json["amount"], 2 * 1999, "{}", payment.text);
    assert_eq!(payment.json["currency"], "EUR", "{}", payment.text);

    // The catalog price changes: the old price is now refused, and an
    // order without one pays the new one.
    let r = stack
        .put_json(
            Service::Inventory,
            &format!("/inventory/{sku}"),
            &json!({"available": 10, "price": 2500, "currency": "EUR"}),
        )
        .await
        .expect(200);
    assert_eq!(r.json["price"], 2500, "{}", r.describe());
    stack
        .wait_for_json(
            Service::Order,
            &format!("/catalog/{sku}"),
            "the order service to learn the new price",
            |c| c["price"] == 2500,
        )
        .await;
    // The order service remembers the prices it read (1999 here); the
    // insert checks them against the catalogue, so an order without a
    // price is charged the new one.
    let r = stack
        .post_order(&with_unit_price(&stack, &OrderBody::new(&sku, 1), None).await)
        .await;
    assert_eq!(r.status, 202, "{}", r.describe());
    let id = r.json["orderId"].as_str().expect("orderId").to_owned();
    let order = stack.wait_status(&id, "SHIPPED").await;
    assert_eq!(order.total, 2500, "{order:?}");
    assert_eq!(order.items[0].unit_price, 2500, "{order:?}");
    let r = stack
        .post_order(&with_unit_price(&stack, &body, Some(json!(1999))).await)
        .await;
    assert_eq!(r.status, 409, "{}", r.describe());
    let id = stack
        .create_order(&OrderBody::new(&sku, 1).price(2500))
        .await;
    let order = stack.wait_status(&id, "SHIPPED").await;
    assert_eq!(order.total, 2500, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpriced_skus_are_refused_and_bad_prices_rejected() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("UNPRICED");
    let path = format!("/inventory/{sku}");
    // Stocked without a price: known to the order service, not orderable.
    stack
        .put_json(Service::Inventory, &path, &json!({"available": 3}))
        .await
        .expect(200);
    stack
        .wait_for_json(
            Service::Order,
            &format!("/catalog/{sku}"),
            "the order service to know the SKU",
            |c| c["available"] == 3,
        )
        .await;
    let body = OrderBody::new(&sku, 1);
    let r = stack
        .post_order(&with_unit_price(&stack, &body, None).await)
        .await;
    assert_eq!(r.status, 422, "{}", r.describe());
    assert_eq!(r.code(), "unpriced_sku", "{}", r.describe());
    assert_eq!(orders_of(&stack, &body).await, 0);

    // A price needs its currency and a sane amount.
    for bad in [
        json!({"available": 3, "price": 1999}),
        json!({"available": 3, "currency": "EUR"}),
        json!({"available": 3, "price": 0, "currency": "EUR"}),
        json!({"available": 3, "price": 100, "currency": "euro"}),
    ] {
        let r = stack.put_json(Service::Inventory, &path, &bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.describe());
        assert_eq!(r.code(), "validation_failed", "{}", r.describe());
    }
    let level = stack.get(Service::Inventory, &path).await.expect(200);
    assert!(level.json.get("price").is_none(), "{}", level.describe());
}

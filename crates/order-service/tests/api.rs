//! The order API at the router, with no database: who may call it, and
//! what it refuses before looking anything up. A refused request changes
//! nothing: it never reaches the (unreachable) database.

use axum::http::{HeaderName, Method, StatusCode};
use chrono::TimeDelta;
use order_service::api::{router, AppState};
use order_service::db::writer::OrderWriter;
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;
use serde_json::{json, Value};

const ORDER: &str = "0190f3b2-1c4d-7a8e-9f00-0123456789ab";

fn app() -> TestApp {
    let pool = unreachable_pool();
    TestApp::new(router(AppState {
        writer: OrderWriter::spawn(pool.clone()),
        pool,
        topics: Default::default(),
        timeout: TimeDelta::minutes(5),
        prices: Default::default(),
    }))
}

/// A valid order body.
fn order() -> Value {
    json!({
        "email": "ann@example.com",
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2}],
        "shippingAddress": {
            "name": "Ann", "line1": "Main St 1", "city": "Berlin",
            "postalCode": "10115", "country": "DE"
        },
        "paymentMethodId": "pm_0123456789abcdef0123456789abcdef"
    })
}

/// `order()` with `path` (a JSON pointer) set to `value`, added when the
/// order has no such field.
fn order_with(path: &str, value: Value) -> Value {
    let mut o = order();
    let (parent, key) = path.rsplit_once('/').expect("a pointer");
    match o.pointer_mut(parent).expect("a field of the order") {
        Value::Object(m) => {
            m.insert(key.to_owned(), value);
        }
        Value::Array(a) => a[key.parse::<usize>().expect("an index")] = value,
        other => panic!("{parent} is {other}"),
    }
    o
}

fn create() -> Call {
    Call::post("/orders").as_customer("c-1")
}

#[tokio::test]
async fn each_route_names_who_may_call_it() {
    let app = app();
    app.assert_guarded_with(Method::POST, "/orders", Some(&order()), &[Role::Operator])
        .await;
    app.assert_guarded(Method::GET, "/orders", &[Role::Customer])
        .await;
    app.assert_guarded(Method::GET, &format!("/orders/{ORDER}"), &[])
        .await;
    app.assert_guarded(Method::GET, &format!("/orders/{ORDER}/timeline"), &[])
        .await;
    app.assert_guarded(
        Method::POST,
        &format!("/orders/{ORDER}/cancel"),
        &[Role::Service],
    )
    .await;
    app.assert_guarded(Method::GET, "/catalog/SKU-1", &[]).await;
}

#[tokio::test]
async fn a_customer_orders_only_for_themself() {
    let mut body = order();
    body["customerId"] = json!("c-2");
    let r = app().send(create().json(body)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test]
async fn every_invalid_field_of_an_order_is_named() {
    let app = app();
    let long = "x".repeat(201);
    let cases = [
        ("/email", json!("not-an-address"), "email"),
        ("/currency", json!("eur"), "currency"),
        ("/items", json!([]), "items"),
        ("/items/0/quantity", json!(0), "items[0].quantity"),
        ("/items/0/quantity", json!(1001), "items[0].quantity"),
        ("/items/0/sku", json!("with space"), "items[0].sku"),
        ("/items/0/unitPrice", json!(-1), "items[0].unitPrice"),
        ("/shippingAddress/name", json!(" "), "shippingAddress.name"),
        (
            "/shippingAddress/line1",
            json!(long),
            "shippingAddress.line1",
        ),
        (
            "/shippingAddress/country",
            json!("Germany"),
            "shippingAddress.country",
        ),
        ("/paymentMethodId", json!("pm_1"), "paymentMethodId"),
        ("/paymentToken", json!("tok_visa"), "paymentToken"),
    ];
    for (path, value, field) in cases {
        let r = app
            .send(create().json(order_with(path, value.clone())))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{path} = {value}: {}",
            r.json
        );
        assert!(
            r.fields().iter().any(|f| f == field),
            "{path} = {value}: {:?} does not name {field}",
            r.fields()
        );
    }
    let two_lines = json!([{"sku": "SKU-1", "quantity": 1}, {"sku": "SKU-1", "quantity": 1}]);
    let r = app
        .send(create().json(order_with("/items", two_lines)))
        .await;
    assert_eq!(r.fields(), ["items[1].sku"]);
}

#[tokio::test]
async fn bodies_that_are_not_the_documented_json_are_refused() {
    let app = app();
    let r = app
        .send(create().raw("application/json", "{\"email\":"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let mut extra = order();
    extra["discount"] = json!(100);
    let r = app.send(create().json(extra)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app
        .send(create().json(order_with("/items/0/quantity", json!("2"))))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app
        .send(create().raw("text/plain", order().to_string()))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .send(create().json(order_with(
            "/shippingAddress/line2",
            json!("x".repeat(70_000)),
        )))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
}

#[tokio::test]
async fn bad_idempotency_keys_and_metadata_headers_are_400() {
    let app = app();
    let key = HeaderName::from_static("idempotency-key");
    for bad in [" ", &"k".repeat(201)] {
        let r = app
            .send(create().header(key.clone(), bad).json(order()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            "{bad:?}"
        );
    }
    let user = HeaderName::from_static("x-user-id");
    let r = app
        .send(create().header(user, &"u".repeat(300)).json(order()))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_header")
    );
}

#[tokio::test]
async fn the_order_list_refuses_bad_filters() {
    let app = app();
    for (query, code) in [
        ("status=SHIPPING", "invalid_status"),
        ("status=", "invalid_status"),
        ("limit=0", "invalid_limit"),
        ("limit=101", "invalid_limit"),
        ("limit=many", "invalid_limit"),
        ("cursor=nonsense", "invalid_cursor"),
    ] {
        let r = app
            .send(Call::get(&format!("/orders?{query}")).as_operator())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{query}"
        );
    }
}

#[tokio::test]
async fn an_order_id_that_is_not_a_uuid_is_400() {
    let app = app();
    for call in [
        Call::get("/orders/o-1").as_customer("c-1"),
        Call::get("/orders/o-1/timeline").as_customer("c-1"),
        Call::post("/orders/o-1/cancel").as_customer("c-1"),
    ] {
        let r = app.send(call).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path")
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    app()
        .assert_fallbacks(
            "/order",
            vec![Call::new(Method::DELETE, &format!("/orders/{ORDER}"))],
        )
        .await;
}

#[tokio::test]
async fn the_routes_are_the_documented_ones() {
    app().assert_routes_match_document().await;
}

#[tokio::test]
async fn committed_openapi_document_is_the_generated_one() {
    app().assert_committed_document(
        &order_service::spec(),
        include_str!("../openapi.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
    );
}

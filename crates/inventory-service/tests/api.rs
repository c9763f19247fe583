//! The inventory API at the router, with no database: who may call it, and
//! what it refuses before looking anything up. A refused request changes
//! nothing: it never reaches the (unreachable) database.

use axum::http::{header, Method, StatusCode};
use inventory_service::api::{router, AppState};
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;
use serde_json::json;

fn app() -> TestApp {
    TestApp::new(router(AppState {
        pool: unreachable_pool(),
        catalog: Default::default(),
    }))
}

#[tokio::test]
async fn reading_needs_a_token_and_changing_needs_an_operator() {
    let app = app();
    app.assert_guarded(Method::GET, "/inventory/SKU-1", &[])
        .await;
    for (method, uri, body) in [
        (Method::PUT, "/inventory/SKU-1", json!({"available": 5})),
        (
            Method::POST,
            "/inventory/SKU-1/adjustments",
            json!({"delta": 5}),
        ),
    ] {
        app.assert_guarded_with(method, uri, Some(&body), &[Role::Customer, Role::Service])
            .await;
    }
}

#[tokio::test]
async fn a_bad_sku_in_the_path_is_400_when_read() {
    let r = app()
        .send(Call::get("/inventory/with%20space").as_customer("c-1"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

#[tokio::test]
async fn every_problem_of_a_put_is_listed() {
    let app = app();
    let cases = [
        (
            "/inventory/SKU-1",
            json!({"available": -1}),
            vec!["available"],
        ),
        (
            "/inventory/SKU-1",
            json!({"available": 1_000_000_001}),
            vec!["available"],
        ),
        (
            "/inventory/with%20space",
            json!({"available": 1}),
            vec!["sku"],
        ),
        (
            "/inventory/SKU-1",
            json!({"available": 1, "price": 100}),
            vec!["currency"],
        ),
        (
            "/inventory/SKU-1",
            json!({"available": 1, "currency": "EUR"}),
            vec!["price"],
        ),
        (
            "/inventory/SKU-1",
            json!({"available": 1, "price": 0, "currency": "eur"}),
            vec!["price", "currency"],
        ),
    ];
    for (uri, body, fields) in cases {
        let r = app
            .send(Call::put(uri).as_operator().json(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{body}"
        );
        assert_eq!(r.fields(), fields, "{body}");
    }
}

#[tokio::test]
async fn every_problem_of_an_adjustment_is_listed() {
    let app = app();
    for (uri, delta, fields) in [
        ("/inventory/SKU-1/adjustments", 0, vec!["delta"]),
        (
            "/inventory/SKU-1/adjustments",
            -1_000_000_001,
            vec!["delta"],
        ),
        ("/inventory/a%2Fb/adjustments", 5, vec!["sku"]),
    ] {
        let r = app
            .send(Call::post(uri).as_operator().json(json!({"delta": delta})))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri} {delta}");
        assert_eq!(r.fields(), fields, "{uri} {delta}");
    }
}

#[tokio::test]
async fn bodies_that_are_not_the_documented_json_are_refused() {
    let app = app();
    let put = || Call::put("/inventory/SKU-1").as_operator();
    let r = app
        .send(put().raw("application/json", "{\"available\":"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let r = app
        .send(put().json(json!({"available": 1, "colour": "red"})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app.send(put().json(json!({"available": "ten"}))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app.send(put().raw("text/plain", "available=1")).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .send(put().raw(
            "application/json",
            format!("{{\"available\":1,\"pad\":\"{}\"}}", "x".repeat(70_000)),
        ))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
}

#[tokio::test]
async fn an_empty_if_match_is_400() {
    let r = app()
        .send(
            Call::put("/inventory/SKU-1")
                .as_operator()
                .header(header::IF_MATCH, " ")
                .json(json!({"available": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_routes_are_the_documented_ones() {
    app().assert_routes_match_document().await;
}

#[tokio::test]
async fn committed_openapi_document_is_the_generated_one() {
    app().assert_committed_document(
        &inventory_service::spec(),
        include_str!("../openapi.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
    );
}

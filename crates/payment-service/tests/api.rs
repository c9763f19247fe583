//! The payment API at the router, with no database: who may call it, and
//! what it refuses before looking anything up.

use axum::http::{Method, StatusCode};
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;
use payment_service::api::{router, AppState};
use serde_json::json;

fn app() -> TestApp {
    TestApp::new(router(AppState {
        pool: unreachable_pool(),
        catalog: Default::default(),
    }))
}

#[tokio::test]
async fn payments_are_for_operators_only() {
    app()
        .assert_guarded(
            Method::GET,
            "/payments/0190f3b2-1c4d-7a8e-9f00-0123456789ab",
            &[Role::Customer, Role::Service],
        )
        .await;
}

#[tokio::test]
async fn an_order_id_that_is_not_a_uuid_is_400() {
    let app = app();
    for bad in ["o-1", "0190f3b2-1c4d-7a8e-9f00", "%20"] {
        let r = app
            .send(Call::get(&format!("/payments/{bad}")).as_operator())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    app()
        .assert_fallbacks(
            "/payments",
            vec![Call::post("/payments/0190f3b2-1c4d-7a8e-9f00-0123456789ab")],
        )
        .await;
}

#[tokio::test]
async fn cards_are_registered_by_customers_and_services_only() {
    let app = app();
    app.assert_guarded_with(
        Method::POST,
        "/payment-methods",
        Some(&json!({"token": "tok_visa"})),
        &[Role::Operator],
    )
    .await;
    app.assert_guarded(
        Method::GET,
        "/payment-methods/pm_0123456789abcdef0123456789abcdef",
        &[],
    )
    .await;
    // A customer registers only their own card.
    let r = app
        .send(
            Call::post("/payment-methods")
                .as_customer("c-1")
                .json(json!({"token": "tok_visa", "customerId": "c-2"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    // A service names the customer.
    let r = app
        .send(
            Call::post("/payment-methods")
                .as_("svc", &[Role::Service])
                .json(json!({"token": "tok_visa"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.fields(), ["customerId"]);
}

#[tokio::test]
async fn a_bad_card_token_or_body_is_refused() {
    let app = app();
    for (token, why) in [
        (json!(""), "empty"),
        (json!("tok visa"), "a space"),
        (json!("t".repeat(101)), "too long"),
    ] {
        let r = app
            .send(
                Call::post("/payment-methods")
                    .as_customer("c-1")
                    .json(json!({ "token": token })),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            "{why}"
        );
        assert_eq!(r.fields(), ["token"], "{why}");
    }
    for (body, code) in [
        (json!({}), "invalid_body"),
        (json!({"token": 4242}), "invalid_body"),
        (json!({"token": "tok_visa", "cvc": "123"}), "invalid_body"),
    ] {
        let r = app
            .send(
                Call::post("/payment-methods")
                    .as_customer("c-1")
                    .json(body.clone()),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, code),
            "{body}"
        );
    }
    let r = app
        .send(Call::get("/payment-methods/tok_visa").as_customer("c-1"))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

#[tokio::test]
async fn the_routes_are_the_documented_ones() {
    app().assert_routes_match_document().await;
}

#[tokio::test]
async fn committed_openapi_document_is_the_generated_one() {
    app().assert_committed_document(
        &payment_service::spec(),
        include_str!("../openapi.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
    );
}

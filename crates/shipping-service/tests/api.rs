//! The shipping API at the router, with no database: who may call it, and
//! what it refuses before looking anything up.

use axum::http::{Method, StatusCode};
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;
use shipping_service::api::{router, AppState};

const ORDER: &str = "0190f3b2-1c4d-7a8e-9f00-0123456789ab";

fn app() -> TestApp {
    TestApp::new(router(AppState {
        pool: unreachable_pool(),
        catalog: Default::default(),
    }))
}

fn routes() -> [(Method, String); 4] {
    [
        (Method::GET, format!("/shipments/{ORDER}")),
        (Method::GET, format!("/shipments/{ORDER}/label")),
        (Method::POST, format!("/shipments/{ORDER}/dispatch")),
        (Method::POST, format!("/shipments/{ORDER}/deliver")),
    ]
}

#[tokio::test]
async fn every_route_is_for_operators_only() {
    let app = app();
    for (method, uri) in routes() {
        app.assert_guarded(method, &uri, &[Role::Customer, Role::Service])
            .await;
    }
}

#[tokio::test]
async fn an_order_id_that_is_not_a_uuid_is_400_on_every_route() {
    let app = app();
    for (method, uri) in routes() {
        let uri = uri.replace(ORDER, "o-1");
        let r = app.send(Call::new(method, &uri).as_operator()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_path"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    app()
        .assert_fallbacks(
            "/shipments",
            vec![
                Call::new(Method::DELETE, &format!("/shipments/{ORDER}")),
                Call::get(&format!("/shipments/{ORDER}/dispatch")),
            ],
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
        &shipping_service::spec(),
        include_str!("../openapi.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
    );
}

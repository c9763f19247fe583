//! The notification API at the router, with no database: who may call it,
//! and what it refuses before looking anything up.

use axum::http::{Method, StatusCode};
use notification_service::api::{router, AppState};
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;

fn app() -> TestApp {
    TestApp::new(router(AppState {
        pool: unreachable_pool(),
    }))
}

#[tokio::test]
async fn the_list_is_for_operators_only() {
    app()
        .assert_guarded(
            Method::GET,
            "/notifications",
            &[Role::Customer, Role::Service],
        )
        .await;
}

#[tokio::test]
async fn a_bad_query_is_400_and_names_the_parameter() {
    let app = app();
    for query in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "orderId=o-1",
        "colour=red",
    ] {
        let r = app
            .send(Call::get(&format!("/notifications?{query}")).as_operator())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{query}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    app()
        .assert_fallbacks("/notifications/1", vec![Call::post("/notifications")])
        .await;
}

#[tokio::test]
async fn the_routes_are_the_documented_ones() {
    app().assert_routes_match_document().await;
}

#[tokio::test]
async fn committed_openapi_document_is_the_generated_one() {
    app().assert_committed_document(
        &notification_service::spec(),
        include_str!("../openapi.json"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
    );
}

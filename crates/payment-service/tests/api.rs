//! The payment API at the router, with no database: who may call it, and
//! what it refuses before looking anything up.

use axum::http::{Method, StatusCode};
use orderflow_service::testing::{unreachable_pool, Call, TestApp};
use orderflow_service::Role;
use payment_service::api::{router, AppState};

fn app() -> TestApp {
    TestApp::new(router(AppState {
        pool: unreachable_pool(),
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
    let app = app();
    let r = app.send(Call::get("/payments").as_operator()).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = app
        .send(Call::post("/payments/0190f3b2-1c4d-7a8e-9f00-0123456789ab").as_operator())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

//! Global and per-subject compatibility configuration.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_status, record, spawn_app};

#[tokio::test]
async fn global_config_defaults_to_backward_and_can_change() {
    let app = spawn_app().await;
    let global = expect_status(app.get("/config").await, StatusCode::OK).await;
    assert_eq!(global, json!({"compatibilityLevel": "BACKWARD"}));

    let updated = expect_status(
        app.put("/config", &json!({"compatibility": "FULL"})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated, json!({"compatibility": "FULL"}));
    let global = expect_status(app.get("/config").await, StatusCode::OK).await;
    assert_eq!(global, json!({"compatibilityLevel": "FULL"}));

    // The global level governs subjects without their own: under FULL,
    // dropping a required field is rejected (old readers need it).
    let v1 = record(
        "G",
        json!([{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]),
    );
    app.register_ok("g", &v1).await;
    let v2 = record("G", json!([{"name": "a", "type": "int"}]));
    expect_error(app.register("g", &v2).await, StatusCode::CONFLICT, 409).await;

    let deleted = expect_status(app.delete("/config").await, StatusCode::OK).await;
    assert_eq!(deleted, json!({"compatibilityLevel": "FULL"}));
    // Back to BACKWARD, which allows dropping a field.
    app.register_ok("g", &v2).await;
}

#[tokio::test]
async fn subject_config_get_put_delete() {
    let app = spawn_app().await;
    let message = expect_error(
        app.get("/config/orders").await,
        StatusCode::NOT_FOUND,
        40408,
    )
    .await;
    assert!(message.contains("orders"), "{message}");
    let fallback = expect_status(
        app.get("/config/orders?defaultToGlobal=true").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fallback, json!({"compatibilityLevel": "BACKWARD"}));

    // Levels are case-insensitive and answered upper-case.
    let updated = expect_status(
        app.put(
            "/config/orders",
            &json!({"compatibility": "forward_transitive"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated, json!({"compatibility": "FORWARD_TRANSITIVE"}));
    let level = expect_status(app.get("/config/orders").await, StatusCode::OK).await;
    assert_eq!(level, json!({"compatibilityLevel": "FORWARD_TRANSITIVE"}));
    // The subject level does not change the global one.
    let global = expect_status(app.get("/config").await, StatusCode::OK).await;
    assert_eq!(global, json!({"compatibilityLevel": "BACKWARD"}));

    let deleted = expect_status(app.delete("/config/orders").await, StatusCode::OK).await;
    assert_eq!(deleted, json!({"compatibilityLevel": "FORWARD_TRANSITIVE"}));
    expect_error(
        app.get("/config/orders").await,
        StatusCode::NOT_FOUND,
        40408,
    )
    .await;
    expect_error(
        app.delete("/config/orders").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
}

#[tokio::test]
async fn invalid_levels_are_rejected_with_42203() {
    let app = spawn_app().await;
    for body in [
        json!({"compatibility": "SIDEWAYS"}),
        json!({"compatibility": ""}),
        json!({}),
    ] {
        expect_error(
            app.put("/config", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
        )
        .await;
        expect_error(
            app.put("/config/orders", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
        )
        .await;
    }
    let global = expect_status(app.get("/config").await, StatusCode::OK).await;
    assert_eq!(global, json!({"compatibilityLevel": "BACKWARD"}));
}

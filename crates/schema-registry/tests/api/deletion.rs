//! Soft and permanent deletes of subjects and versions.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_status, record, spawn_app};

fn schema(fields: serde_json::Value) -> String {
    record("D", fields)
}

#[tokio::test]
async fn soft_deleted_versions_leave_listings_and_checks() {
    let app = spawn_app().await;
    let a = json!({"name": "a", "type": "int"});
    let b = json!({"name": "b", "type": "int", "default": 0});
    let v1 = schema(json!([a.clone()]));
    let v2 = schema(json!([a.clone(), b.clone()]));
    app.register_ok("d", &v1).await;
    app.register_ok("d", &v2).await;

    let deleted = expect_status(app.delete("/subjects/d/versions/2").await, StatusCode::OK).await;
    assert_eq!(deleted, json!(2));
    let versions = expect_status(app.get("/subjects/d/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1]));
    let all = expect_status(
        app.get("/subjects/d/versions?deleted=true").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all, json!([1, 2]));
    let latest = expect_status(app.get("/subjects/d/versions/latest").await, StatusCode::OK).await;
    assert_eq!(latest["version"], json!(1));
    expect_error(
        app.get("/subjects/d/versions/2").await,
        StatusCode::NOT_FOUND,
        40402,
    )
    .await;
    let kept = expect_status(
        app.get("/subjects/d/versions/2?deleted=true").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(kept["schema"], json!(v2));
    // Deleting it again is 40406; unknown versions are 40402.
    expect_error(
        app.delete("/subjects/d/versions/2").await,
        StatusCode::NOT_FOUND,
        40406,
    )
    .await;
    expect_error(
        app.delete("/subjects/d/versions/9").await,
        StatusCode::NOT_FOUND,
        40402,
    )
    .await;

    // v3 {b required} reads v1 data? No (b missing). It reads v2 data, but
    // v2 is deleted, so the check is against v1 and fails.
    let v3 = schema(json!([a.clone(), {"name": "b", "type": "int"}]));
    expect_error(app.register("d", &v3).await, StatusCode::CONFLICT, 409).await;

    // Re-registering the deleted schema makes a new version; numbering
    // continues past deleted versions.
    app.register_ok("d", &v2).await;
    let versions = expect_status(app.get("/subjects/d/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1, 3]));
}

#[tokio::test]
async fn subjects_soft_delete_then_permanent_delete() {
    let app = spawn_app().await;
    let v1 = schema(json!([{"name": "a", "type": "int"}]));
    let id = app.register_ok("gone", &v1).await;
    app.register_ok("kept", &v1).await;

    expect_error(
        app.delete("/subjects/gone?permanent=true").await,
        StatusCode::NOT_FOUND,
        40405,
    )
    .await;
    let deleted = expect_status(app.delete("/subjects/gone").await, StatusCode::OK).await;
    assert_eq!(deleted, json!([1]));
    let subjects = expect_status(app.get("/subjects").await, StatusCode::OK).await;
    assert_eq!(subjects, json!(["kept"]));
    let subjects = expect_status(app.get("/subjects?deleted=true").await, StatusCode::OK).await;
    assert_eq!(subjects, json!(["gone", "kept"]));
    expect_error(
        app.get("/subjects/gone/versions").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    expect_error(
        app.get("/subjects/gone/versions/latest").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    expect_error(
        app.post("/subjects/gone", &json!({"schema": v1})).await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    expect_error(
        app.delete("/subjects/gone").await,
        StatusCode::NOT_FOUND,
        40404,
    )
    .await;

    // The schema id still resolves: readers of old records need it.
    expect_status(app.get(&format!("/schemas/ids/{id}")).await, StatusCode::OK).await;

    let removed = expect_status(
        app.delete("/subjects/gone?permanent=true").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(removed, json!([1]));
    let subjects = expect_status(app.get("/subjects?deleted=true").await, StatusCode::OK).await;
    assert_eq!(subjects, json!(["kept"]));
    expect_error(
        app.delete("/subjects/gone").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
}

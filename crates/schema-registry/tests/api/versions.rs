//! Listing and fetching subject versions.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_status, record, spawn_app};

#[tokio::test]
async fn versions_latest_and_their_errors() {
    let app = spawn_app().await;
    let v1 = record("Item", json!([{"name": "sku", "type": "string"}]));
    let v2 = record(
        "Item",
        json!([{"name": "sku", "type": "string"}, {"name": "qty", "type": "int", "default": 1}]),
    );
    let id1 = app.register_ok("items-value", &v1).await;
    let id2 = app.register_ok("items-value", &v2).await;
    assert_ne!(id1, id2);

    let versions = expect_status(
        app.get("/subjects/items-value/versions").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(versions, json!([1, 2]));

    let first = expect_status(
        app.get("/subjects/items-value/versions/1").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        first,
        json!({"subject": "items-value", "id": id1, "version": 1, "schema": v1})
    );
    for latest in ["latest", "-1"] {
        let body = expect_status(
            app.get(&format!("/subjects/items-value/versions/{latest}"))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body["version"], json!(2));
        assert_eq!(body["id"], json!(id2));
    }
    let raw = expect_status(
        app.get("/subjects/items-value/versions/latest/schema")
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        raw,
        serde_json::from_str::<serde_json::Value>(&v2).expect("json")
    );

    let message = expect_error(
        app.get("/subjects/nothing/versions").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    assert_eq!(message, "Subject 'nothing' not found.");
    expect_error(
        app.get("/subjects/nothing/versions/1").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    expect_error(
        app.get("/subjects/nothing/versions/latest").await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    let message = expect_error(
        app.get("/subjects/items-value/versions/3").await,
        StatusCode::NOT_FOUND,
        40402,
    )
    .await;
    assert_eq!(message, "Version 3 not found.");
    expect_error(
        app.get("/subjects/items-value/versions/3/schema").await,
        StatusCode::NOT_FOUND,
        40402,
    )
    .await;
    for bad in ["0", "-2", "two", "2147483648"] {
        expect_error(
            app.get(&format!("/subjects/items-value/versions/{bad}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
        )
        .await;
    }
}

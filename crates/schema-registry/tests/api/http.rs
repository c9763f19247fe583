//! HTTP-level behaviour: content types, malformed bodies, limits, health.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_status, record, spawn_app, CONTENT_TYPE_V1};

#[tokio::test]
async fn any_json_content_type_or_none_is_accepted() {
    let app = spawn_app().await;
    let body = json!({"schema": record("C", json!([{"name": "a", "type": "int"}]))}).to_string();
    let url = format!("{}/subjects/c/versions", app.address);
    for content_type in [Some(CONTENT_TYPE_V1), Some("application/json"), None] {
        let mut request = app.client.post(&url).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("request is sent");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE_V1)
        );
        let answer = expect_status(response, StatusCode::OK).await;
        assert_eq!(answer, json!({"id": 1}), "{content_type:?}");
    }
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let app = spawn_app().await;
    let url = format!("{}/subjects/c/versions", app.address);
    let send = |body: &'static str| {
        app.client
            .post(&url)
            .header("content-type", CONTENT_TYPE_V1)
            .body(body)
            .send()
    };
    for body in ["{not json", "", "[1, 2"] {
        let response = send(body).await.expect("request is sent");
        expect_error(response, StatusCode::BAD_REQUEST, 400).await;
    }
    // Well-formed JSON of the wrong shape is also a 400, as in Confluent.
    let response = send(r#"{"schema": 42}"#).await.expect("request is sent");
    expect_error(response, StatusCode::BAD_REQUEST, 400).await;
    // A missing schema is an invalid schema.
    let response = send("{}").await.expect("request is sent");
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, 42201).await;
    let response = app
        .client
        .put(format!("{}/config", app.address))
        .body("compatibility=FULL")
        .send()
        .await
        .expect("request is sent");
    expect_error(response, StatusCode::BAD_REQUEST, 400).await;
}

#[tokio::test]
async fn oversized_bodies_are_rejected_with_413() {
    let app = spawn_app().await;
    let huge = json!({"schema": "x".repeat(2 * 1024 * 1024)});
    expect_error(
        app.post("/subjects/c/versions", &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        413,
    )
    .await;
}

#[tokio::test]
async fn root_health_and_unknown_routes() {
    let app = spawn_app().await;
    assert_eq!(
        expect_status(app.get("/").await, StatusCode::OK).await,
        json!({})
    );
    let live = expect_status(app.get("/health/live").await, StatusCode::OK).await;
    assert_eq!(live, json!({"status": "ok"}));
    let ready = expect_status(app.get("/health/ready").await, StatusCode::OK).await;
    assert_eq!(ready, json!({"status": "ok"}));
    expect_error(app.get("/nope").await, StatusCode::NOT_FOUND, 404).await;
    expect_error(
        app.delete("/schemas/types").await,
        StatusCode::METHOD_NOT_ALLOWED,
        405,
    )
    .await;
}

#[tokio::test]
async fn subject_names_are_percent_decoded() {
    let app = spawn_app().await;
    let schema = record("P", json!([{"name": "a", "type": "int"}]));
    app.register_ok("orders%2Fv1%20value", &schema).await;
    let subjects = expect_status(app.get("/subjects").await, StatusCode::OK).await;
    assert_eq!(subjects, json!(["orders/v1 value"]));
}

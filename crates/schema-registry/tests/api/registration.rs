//! Registering schemas, fetching them by id, and the lookup endpoint.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{expect_error, expect_status, record, spawn_app};

fn user_v1() -> String {
    record("User", json!([{"name": "id", "type": "string"}]))
}

#[tokio::test]
async fn same_schema_twice_returns_same_id_and_one_version() {
    let app = spawn_app().await;
    let first = app.register_ok("users-value", &user_v1()).await;
    // Same canonical schema, different whitespace and key order.
    let reordered = r#"{ "fields": [ {"type": "string", "name": "id"} ],
        "namespace": "test", "name": "User", "type": "record" }"#;
    let second = app.register_ok("users-value", reordered).await;
    assert_eq!(first, second);
    let versions = expect_status(
        app.get("/subjects/users-value/versions").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(versions, json!([1]));
}

#[tokio::test]
async fn same_schema_under_another_subject_reuses_the_id() {
    let app = spawn_app().await;
    let a = app.register_ok("a-value", &user_v1()).await;
    let b = app.register_ok("b-value", &user_v1()).await;
    assert_eq!(a, b);
    let other = app
        .register_ok(
            "c-value",
            &record("Other", json!([{"name": "x", "type": "int"}])),
        )
        .await;
    assert_ne!(other, a);
    let subjects = expect_status(app.get("/subjects").await, StatusCode::OK).await;
    assert_eq!(subjects, json!(["a-value", "b-value", "c-value"]));
    let usages = expect_status(
        app.get(&format!("/schemas/ids/{a}/versions")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        usages,
        json!([{"subject": "a-value", "version": 1}, {"subject": "b-value", "version": 1}])
    );
}

#[tokio::test]
async fn schema_by_id_and_unknown_ids() {
    let app = spawn_app().await;
    let schema = user_v1();
    let id = app.register_ok("users-value", &schema).await;

    let body = expect_status(app.get(&format!("/schemas/ids/{id}")).await, StatusCode::OK).await;
    // AVRO is the default type, so Confluent leaves `schemaType` out.
    assert_eq!(body, json!({ "schema": schema }));

    let raw = expect_status(
        app.get(&format!("/schemas/ids/{id}/schema")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        raw,
        serde_json::from_str::<serde_json::Value>(&schema).expect("json")
    );

    let message = expect_error(
        app.get("/schemas/ids/999").await,
        StatusCode::NOT_FOUND,
        40403,
    )
    .await;
    assert_eq!(message, "Schema 999 not found");
    expect_error(
        app.get("/schemas/ids/999/schema").await,
        StatusCode::NOT_FOUND,
        40403,
    )
    .await;
    expect_error(
        app.get("/schemas/ids/abc").await,
        StatusCode::NOT_FOUND,
        404,
    )
    .await;

    let types = expect_status(app.get("/schemas/types").await, StatusCode::OK).await;
    assert_eq!(types, json!(["AVRO"]));
}

#[tokio::test]
async fn lookup_finds_registered_schemas_only() {
    let app = spawn_app().await;
    let schema = user_v1();
    let id = app.register_ok("users-value", &schema).await;

    let found = expect_status(
        app.post("/subjects/users-value", &json!({ "schema": schema }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        found,
        json!({"subject": "users-value", "id": id, "version": 1, "schema": schema})
    );

    let other = record("User", json!([{"name": "other", "type": "int"}]));
    expect_error(
        app.post("/subjects/users-value", &json!({ "schema": other }))
            .await,
        StatusCode::NOT_FOUND,
        40403,
    )
    .await;
    expect_error(
        app.post("/subjects/nobody", &json!({ "schema": schema }))
            .await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
}

#[tokio::test]
async fn invalid_schemas_are_rejected_with_42201() {
    let app = spawn_app().await;
    for bad in [
        "not json at all",
        r#"{"type": "record", "name": "NoFields"}"#,
        r#"{"type": "nonsense"}"#,
        "",
    ] {
        expect_error(
            app.register("s", bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
        )
        .await;
    }
    let protobuf = json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"});
    let message = expect_error(
        app.post("/subjects/s/versions", &protobuf).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    )
    .await;
    assert!(message.contains("unsupported"), "{message}");
    let missing = app
        .post("/subjects/s/versions", &json!({"schemaType": "AVRO"}))
        .await;
    expect_error(missing, StatusCode::UNPROCESSABLE_ENTITY, 42201).await;
    // Nothing was registered along the way.
    assert_eq!(
        expect_status(app.get("/subjects").await, StatusCode::OK).await,
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_are_consistent() {
    let app = spawn_app().await;
    let same = user_v1();
    let registrations = (0..8).map(|_| app.register_ok("users-value", &same));
    let ids = join_all(registrations).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "ids: {ids:?}");

    // Distinct compatible schemas each get their own version.
    let schemas: Vec<String> = (0..6)
        .map(|i| {
            record(
                "User",
                json!([{"name": "id", "type": "string"}, {"name": format!("f{i}"), "type": "int", "default": 0}]),
            )
        })
        .collect();
    let mut ids = join_all(schemas.iter().map(|s| app.register_ok("users-value", s))).await;
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    let versions = expect_status(
        app.get("/subjects/users-value/versions").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(versions, json!([1, 2, 3, 4, 5, 6, 7]));
}

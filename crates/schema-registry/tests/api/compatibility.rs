//! Compatibility levels enforced on registration, and the check endpoints.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_status, record, spawn_app};

fn fields(list: Value) -> String {
    record("Order", list)
}

fn a() -> Value {
    json!({"name": "a", "type": "string"})
}

fn b_required() -> Value {
    json!({"name": "b", "type": "int"})
}

fn b_default() -> Value {
    json!({"name": "b", "type": "int", "default": 0})
}

#[tokio::test]
async fn backward_is_the_default_level() {
    let app = spawn_app().await;
    app.register_ok("orders", &fields(json!([a()]))).await;

    // A new field with a default: the new schema can read old data.
    app.register_ok("orders", &fields(json!([a(), b_default()])))
        .await;
    let versions = expect_status(app.get("/subjects/orders/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1, 2]));

    // A new field without a default cannot be filled from old data.
    let c_required = json!({"name": "c", "type": "long"});
    let message = expect_error(
        app.register("orders", &fields(json!([a(), b_default(), c_required])))
            .await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
    assert!(
        message.starts_with(
            "Schema being registered is incompatible with an earlier schema for subject \"orders\", details: "
        ),
        "{message}"
    );
    assert!(message.contains("Field 'c'"), "{message}");

    // Removing a field is backward compatible: readers ignore extra data.
    app.register_ok("orders", &fields(json!([b_default()])))
        .await;
    // Changing a type incompatibly is not.
    let b_string = json!({"name": "b", "type": "string", "default": ""});
    expect_error(
        app.register("orders", &fields(json!([b_string]))).await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
    let versions = expect_status(app.get("/subjects/orders/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1, 2, 3]));
}

#[tokio::test]
async fn forward_lets_old_readers_read_new_data() {
    let app = spawn_app().await;
    app.set_level("orders", "FORWARD").await;
    app.register_ok("orders", &fields(json!([a(), b_required()])))
        .await;

    // Adding a required field: the old schema just ignores it.
    let c_required = json!({"name": "c", "type": "long"});
    app.register_ok(
        "orders",
        &fields(json!([a(), b_required(), c_required.clone()])),
    )
    .await;
    // Removing `b`, which old readers need and which has no default.
    expect_error(
        app.register("orders", &fields(json!([a(), c_required])))
            .await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
}

#[tokio::test]
async fn full_needs_both_directions() {
    let app = spawn_app().await;
    app.set_level("orders", "FULL").await;
    app.register_ok("orders", &fields(json!([a(), b_default()])))
        .await;

    // Backward fails: a new required field.
    let c_required = json!({"name": "c", "type": "long"});
    expect_error(
        app.register("orders", &fields(json!([a(), b_default(), c_required])))
            .await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
    // Forward fails: `a` removed although old readers need it.
    expect_error(
        app.register("orders", &fields(json!([b_default()]))).await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
    // Optional fields with defaults work both ways.
    let c_default = json!({"name": "c", "type": "long", "default": 0});
    app.register_ok("orders", &fields(json!([a(), b_default(), c_default])))
        .await;
    // And dropping a field that has a default works both ways too.
    app.register_ok("orders", &fields(json!([a()]))).await;
}

#[tokio::test]
async fn transitive_levels_check_every_version() {
    let app = spawn_app().await;
    // v1 {a}, v2 {a, b default}: both levels accept v2.
    // v3 {a, b required} reads v2 data (it has b) but not v1 data (no b).
    let v1 = fields(json!([a()]));
    let v2 = fields(json!([a(), b_default()]));
    let v3 = fields(json!([a(), b_required()]));
    for (subject, level) in [("plain", "BACKWARD"), ("transitive", "BACKWARD_TRANSITIVE")] {
        app.set_level(subject, level).await;
        app.register_ok(subject, &v1).await;
        app.register_ok(subject, &v2).await;
    }
    app.register_ok("plain", &v3).await;
    let message = expect_error(
        app.register("transitive", &v3).await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
    assert!(message.contains("oldSchemaVersion: 1"), "{message}");

    // FORWARD_TRANSITIVE: w1 {a, b required}, w2 {a, b default}, w3 {a}.
    // w2 can read w3 data (b defaults) but w1 cannot (b is required).
    app.set_level("fwd", "FORWARD").await;
    app.set_level("fwd-transitive", "FORWARD_TRANSITIVE").await;
    for subject in ["fwd", "fwd-transitive"] {
        app.register_ok(subject, &v3).await;
        app.register_ok(subject, &v2).await;
    }
    app.register_ok("fwd", &v1).await;
    expect_error(
        app.register("fwd-transitive", &v1).await,
        StatusCode::CONFLICT,
        409,
    )
    .await;
}

#[tokio::test]
async fn none_allows_anything() {
    let app = spawn_app().await;
    app.set_level("anything", "NONE").await;
    app.register_ok("anything", &fields(json!([a()]))).await;
    app.register_ok("anything", r#""string""#).await;
    app.register_ok("anything", &record("Other", json!([b_required()])))
        .await;
    let versions =
        expect_status(app.get("/subjects/anything/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1, 2, 3]));
}

#[tokio::test]
async fn compatibility_endpoints_answer_without_registering() {
    let app = spawn_app().await;
    app.register_ok("orders", &fields(json!([a()]))).await;
    let good = json!({ "schema": fields(json!([a(), b_default()])) });
    let bad = json!({ "schema": fields(json!([a(), b_required()])) });

    for path in [
        "/compatibility/subjects/orders/versions/latest",
        "/compatibility/subjects/orders/versions/1",
        "/compatibility/subjects/orders/versions",
    ] {
        let yes = expect_status(app.post(path, &good).await, StatusCode::OK).await;
        assert_eq!(yes, json!({"is_compatible": true}), "{path}");
        let no = expect_status(app.post(path, &bad).await, StatusCode::OK).await;
        assert_eq!(no, json!({"is_compatible": false}), "{path}");
    }
    let verbose = expect_status(
        app.post(
            "/compatibility/subjects/orders/versions/latest?verbose=true",
            &bad,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verbose["is_compatible"], json!(false));
    let messages = verbose["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{verbose}");
    assert!(messages[0].as_str().expect("string").contains("Field 'b'"));

    // Nothing was registered by the checks.
    let versions = expect_status(app.get("/subjects/orders/versions").await, StatusCode::OK).await;
    assert_eq!(versions, json!([1]));

    expect_error(
        app.post("/compatibility/subjects/nobody/versions/latest", &good)
            .await,
        StatusCode::NOT_FOUND,
        40401,
    )
    .await;
    expect_error(
        app.post("/compatibility/subjects/orders/versions/7", &good)
            .await,
        StatusCode::NOT_FOUND,
        40402,
    )
    .await;
    expect_error(
        app.post("/compatibility/subjects/orders/versions/zero", &good)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42202,
    )
    .await;
    // A subject without versions accepts anything, as in Confluent.
    let fresh = expect_status(
        app.post("/compatibility/subjects/nobody/versions", &bad)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(fresh, json!({"is_compatible": true}));
    expect_error(
        app.post(
            "/compatibility/subjects/orders/versions",
            &json!({"schema": "{"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        42201,
    )
    .await;
}

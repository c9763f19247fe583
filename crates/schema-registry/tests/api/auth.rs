//! HTTP Basic authentication and roles: who may read, register, delete and
//! change levels; a refused request changes nothing.

use orderflow_schema_registry::{build, Config};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_status, record, spawn_app_with, TestApp, TestDatabase};

/// A users file: `ci`'s password is given as its SHA-256 digest.
fn users_file() -> std::path::PathBuf {
    use sha2::Digest as _;
    let path = std::env::temp_dir().join(format!("sr-users-{}", uuid::Uuid::new_v4().simple()));
    let text = format!(
        "# test users\nroot: admin-pw,admin\nci: SHA256:{},write\nsvc: svc-pw,read\n",
        hex::encode(sha2::Sha256::digest(b"ci-pw"))
    );
    std::fs::write(&path, text).expect("write the users file");
    path
}

async fn spawn_secured() -> TestApp {
    let path = users_file();
    spawn_app_with(|c| c.auth_file = Some(path)).await
}

async fn call(
    app: &TestApp,
    user: Option<(&str, &str)>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("content-type", crate::helpers::CONTENT_TYPE_V1);
    if let Some((name, password)) = user {
        req = req.basic_auth(name, Some(password));
    }
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    req.send().await.expect("request is sent")
}

const ROOT: Option<(&str, &str)> = Some(("root", "admin-pw"));
const CI: Option<(&str, &str)> = Some(("ci", "ci-pw"));
const SVC: Option<(&str, &str)> = Some(("svc", "svc-pw"));

fn schema() -> Value {
    json!({ "schema": record("A", json!([{"name": "a", "type": "int"}])) })
}

async fn subjects(app: &TestApp) -> Value {
    expect_status(
        call(app, ROOT, Method::GET, "/subjects", None).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn without_credentials_only_the_health_probes_answer() {
    let app = spawn_secured().await;
    for path in ["/health/live", "/health/ready"] {
        let r = call(&app, None, Method::GET, path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    for (method, path, body) in [
        (Method::GET, "/", None),
        (Method::GET, "/subjects", None),
        (Method::GET, "/schemas/ids/1", None),
        (Method::POST, "/subjects/s/versions", Some(schema())),
        (
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "NONE"})),
        ),
        (Method::DELETE, "/subjects/s", None),
    ] {
        let r = call(&app, None, method.clone(), path, body).await;
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(
            challenge.as_deref(),
            Some("Basic realm=\"schema-registry\""),
            "{method} {path}"
        );
        expect_error(r, StatusCode::UNAUTHORIZED, 40101).await;
    }
    // A wrong password, an unknown user, another scheme: the same answer.
    for user in [
        Some(("root", "wrong")),
        Some(("nobody", "admin-pw")),
        Some(("root", "")),
    ] {
        let r = call(&app, user, Method::GET, "/subjects", None).await;
        expect_error(r, StatusCode::UNAUTHORIZED, 40101).await;
    }
    let r = app
        .client
        .get(format!("{}/subjects", app.address))
        .bearer_auth("admin-pw")
        .send()
        .await
        .expect("sent");
    expect_error(r, StatusCode::UNAUTHORIZED, 40101).await;
    assert_eq!(subjects(&app).await, json!([]), "nothing was registered");
}

#[tokio::test]
async fn each_role_may_do_its_part_and_no_more() {
    let app = spawn_secured().await;

    // read: no registering; looking up and checking compatibility are fine.
    let r = call(
        &app,
        SVC,
        Method::POST,
        "/subjects/s/versions",
        Some(schema()),
    )
    .await;
    let message = expect_error(r, StatusCode::FORBIDDEN, 40301).await;
    assert!(
        message.contains("'svc'") && message.contains("'write'"),
        "{message}"
    );
    assert_eq!(
        subjects(&app).await,
        json!([]),
        "a refused register changed nothing"
    );
    let r = call(&app, SVC, Method::POST, "/subjects/s", Some(schema())).await;
    expect_error(r, StatusCode::NOT_FOUND, 40401).await;

    // write: registers; may not change levels or delete.
    let r = call(
        &app,
        CI,
        Method::POST,
        "/subjects/s/versions",
        Some(schema()),
    )
    .await;
    let id = expect_status(r, StatusCode::OK).await["id"].clone();
    let r = call(&app, SVC, Method::GET, &format!("/schemas/ids/{id}"), None).await;
    expect_status(r, StatusCode::OK).await;
    let r = call(
        &app,
        SVC,
        Method::POST,
        "/compatibility/subjects/s/versions/latest",
        Some(schema()),
    )
    .await;
    assert_eq!(
        expect_status(r, StatusCode::OK).await["is_compatible"],
        json!(true)
    );
    for (user, method, path, body) in [
        (
            CI,
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "NONE"})),
        ),
        (
            CI,
            Method::PUT,
            "/config/s",
            Some(json!({"compatibility": "NONE"})),
        ),
        (CI, Method::DELETE, "/config", None),
        (CI, Method::DELETE, "/subjects/s", None),
        (CI, Method::DELETE, "/subjects/s/versions/1", None),
        (
            SVC,
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "NONE"})),
        ),
        (SVC, Method::DELETE, "/subjects/s", None),
    ] {
        let r = call(&app, user, method.clone(), path, body).await;
        expect_error(r, StatusCode::FORBIDDEN, 40301).await;
    }
    let r = call(&app, ROOT, Method::GET, "/config", None).await;
    assert_eq!(
        expect_status(r, StatusCode::OK).await["compatibilityLevel"],
        json!("BACKWARD"),
        "a refused level change changed nothing"
    );
    assert_eq!(
        subjects(&app).await,
        json!(["s"]),
        "a refused delete changed nothing"
    );

    // admin: everything.
    let r = call(
        &app,
        ROOT,
        Method::PUT,
        "/config/s",
        Some(json!({"compatibility": "FULL"})),
    )
    .await;
    expect_status(r, StatusCode::OK).await;
    let r = call(&app, ROOT, Method::DELETE, "/subjects/s", None).await;
    assert_eq!(expect_status(r, StatusCode::OK).await, json!([1]));
    assert_eq!(subjects(&app).await, json!([]));
}

#[tokio::test]
async fn a_bad_users_file_or_an_open_public_address_stops_the_start() {
    let db = TestDatabase::new();
    let config = |auth_file, listen: &str, anonymous| Config {
        database: db.options(),
        listen_addr: listen.parse().expect("address"),
        auth_file,
        anonymous,
        shutdown_grace: orderflow_schema_registry::config::DEFAULT_SHUTDOWN_GRACE,
    };
    let bad = std::env::temp_dir().join(format!("sr-users-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&bad, "root: pw,superuser\n").expect("write");
    let e = build(config(Some(bad), "127.0.0.1:0", false))
        .await
        .expect_err("unknown role");
    assert!(format!("{e:#}").contains("line 1"), "{e:#}");
    let missing = std::env::temp_dir().join("sr-users-that-do-not-exist");
    let e = build(config(Some(missing), "127.0.0.1:0", false))
        .await
        .expect_err("missing file");
    assert!(format!("{e:#}").contains("reading the users file"), "{e:#}");
    let e = build(config(None, "0.0.0.0:0", false))
        .await
        .expect_err("open on every address");
    assert!(
        format!("{e:#}").contains("SCHEMA_REGISTRY_AUTH_FILE"),
        "{e:#}"
    );
    // Said out loud, it starts.
    let app = build(config(None, "0.0.0.0:0", true))
        .await
        .expect("anonymous by choice");
    assert_ne!(app.port(), 0);
}

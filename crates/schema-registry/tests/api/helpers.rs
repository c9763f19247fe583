//! Test support: a fresh database per test and the real app on port 0.

use std::str::FromStr;

use orderflow_schema_registry::{build, Config};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

/// Maintenance database used to create and drop per-test databases.
pub const TEST_DATABASE_URL_VAR: &str = "ORDERFLOW_TEST_DATABASE_URL";
const DEFAULT_TEST_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// Confluent's request media type.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";

fn maintenance_url() -> String {
    std::env::var(TEST_DATABASE_URL_VAR).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// Connection options for the maintenance database.
pub fn maintenance_options() -> PgConnectOptions {
    PgConnectOptions::from_str(&maintenance_url())
        .expect("ORDERFLOW_TEST_DATABASE_URL is a postgres URL")
}

/// A database name unique to one test; dropped (with `FORCE`) on drop.
pub struct TestDatabase {
    /// The database name.
    pub name: String,
}

impl TestDatabase {
    /// Picks a fresh name; the registry creates the database on start.
    pub fn new() -> Self {
        Self {
            name: format!("sr_test_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The maintenance URL with this database's name in its path.
    pub fn url(&self) -> String {
        let url = maintenance_url();
        let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let (authority, _) = base.rsplit_once('/').expect("the URL names a database");
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("{authority}/{}{query}", self.name)
    }

    /// Connection options for this database.
    pub fn options(&self) -> PgConnectOptions {
        maintenance_options().database(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not be blocked on
        // itself: use a thread with its own runtime and wait for it.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime starts");
            runtime.block_on(async move {
                let mut conn = maintenance_options()
                    .connect()
                    .await
                    .expect("connect to the maintenance database for cleanup");
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .expect("drop the test database");
                conn.close().await.ok();
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("dropping test database {} failed", self.name);
        }
    }
}

/// The registry running on a random port against its own database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// A client without default headers, so tests choose content types.
    pub client: reqwest::Client,
    /// The app's database, dropped after the server is told to stop.
    _db: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
    }
}

/// Builds the app against a fresh database and serves it in the background.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// As [`spawn_app`], with the configuration changed by `adjust` first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::new();
    let mut config = Config {
        database: db.options(),
        listen_addr: "127.0.0.1:0".parse().expect("valid address"),
        auth_file: None,
        anonymous: false,
        shutdown_grace: orderflow_schema_registry::config::DEFAULT_SHUTDOWN_GRACE,
    };
    adjust(&mut config);
    let app = build(config).await.expect("the registry builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        rx.await.ok();
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        _db: db,
        shutdown: Some(tx),
    }
}

/// A record schema named `name` with the given field list (JSON).
pub fn record(name: &str, fields: Value) -> String {
    json!({"type": "record", "name": name, "namespace": "test", "fields": fields}).to_string()
}

impl TestApp {
    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET request is sent")
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.address))
            .send()
            .await
            .expect("DELETE request is sent")
    }

    /// `POST path` with a JSON body in Confluent's media type.
    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .header("content-type", CONTENT_TYPE_V1)
            .body(body.to_string())
            .send()
            .await
            .expect("POST request is sent")
    }

    /// `PUT path` with a JSON body in Confluent's media type.
    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.client
            .put(format!("{}{path}", self.address))
            .header("content-type", CONTENT_TYPE_V1)
            .body(body.to_string())
            .send()
            .await
            .expect("PUT request is sent")
    }

    /// Registers `schema` under `subject`; returns the raw response.
    pub async fn register(&self, subject: &str, schema: &str) -> Response {
        self.post(
            &format!("/subjects/{subject}/versions"),
            &json!({ "schema": schema }),
        )
        .await
    }

    /// Registers `schema` under `subject`, expecting success; returns the id.
    pub async fn register_ok(&self, subject: &str, schema: &str) -> i64 {
        let body = expect_status(self.register(subject, schema).await, StatusCode::OK).await;
        body["id"].as_i64().expect("register answers an id")
    }

    /// Sets the subject's compatibility level, expecting success.
    pub async fn set_level(&self, subject: &str, level: &str) {
        let body = expect_status(
            self.put(
                &format!("/config/{subject}"),
                &json!({ "compatibility": level }),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({ "compatibility": level }));
    }
}

/// Asserts the status and returns the JSON body.
pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body is readable");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).expect("body is JSON")
}

/// Asserts a Confluent error with `status` and `error_code`; returns the message.
pub async fn expect_error(response: Response, status: StatusCode, error_code: i64) -> String {
    let body = expect_status(response, status).await;
    assert_eq!(body["error_code"], json!(error_code), "body: {body}");
    body["message"]
        .as_str()
        .expect("error has a message")
        .to_owned()
}

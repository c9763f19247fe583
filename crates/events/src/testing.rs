//! Test support (feature `testing`): fresh databases, unique topics and the
//! infrastructure addresses from the environment, so the same tests run
//! against the local stack or against real Kafka and Confluent Schema
//! Registry.
//!
//! - `ORDERFLOW_TEST_DATABASE_URL`: an admin connection (default
//!   `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`, as the
//!   scripts default to);
//! - `KAFKA_BOOTSTRAP_SERVERS` (default `127.0.0.1:19092`, where
//!   `scripts/test` starts a broker);
//! - `SCHEMA_REGISTRY_URL` (default `http://127.0.0.1:18081`).

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::kafka::KafkaConfig;
use crate::topics::TopicCatalog;

/// Admin database URL for tests.
pub fn admin_database_url() -> String {
    std::env::var("ORDERFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into())
}

/// Kafka settings for tests.
pub fn kafka_config(client_id: &str) -> KafkaConfig {
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:19092".into());
    let mut cfg = KafkaConfig::new(&bootstrap, client_id);
    cfg.message_timeout = Duration::from_secs(10);
    cfg
}

/// Schema registry URL for tests.
pub fn registry_url() -> String {
    std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:18081".into())
}

/// A topic catalog whose names are unique to one test (`t<uuid>-` prefix),
/// with few partitions so topic creation is quick.
pub fn unique_catalog(partitions: i32) -> TopicCatalog {
    let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    let mut vars = vec![("ORDERFLOW_TOPIC_PREFIX".to_owned(), prefix)];
    for s in crate::topics::Stream::ALL {
        let d = s.default_spec();
        vars.push((
            format!("ORDERFLOW_TOPIC_{}", s.env_name()),
            format!("{}:{partitions}", d.name),
        ));
    }
    TopicCatalog::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .expect("generated catalog is valid")
}

/// A database created for one test and dropped when the guard is dropped.
pub struct TestDatabase {
    /// Pool on the new database (with this crate's migrations applied).
    pub pool: PgPool,
    /// Its name.
    pub name: String,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates a fresh database and runs this crate's migrations.
    pub async fn new() -> Self {
        let admin: PgConnectOptions = admin_database_url()
            .parse()
            .expect("ORDERFLOW_TEST_DATABASE_URL");
        let name = format!("of_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(admin.clone().database(&name))
            .await
            .expect("connect to the test database");
        crate::migrate(&pool).await.expect("migrations");
        Self { pool, name, admin }
    }

    /// A fresh connection to the test database.
    pub async fn connect(&self) -> PgConnection {
        self.admin
            .clone()
            .database(&self.name)
            .connect()
            .await
            .expect("connect")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs inside the test's runtime; do the cleanup on a thread of
        // its own so it can block until the database is gone.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // Connections still checked out (a task of a failed test)
                // would make `close` wait forever; FORCE ends them anyway.
                let _ = tokio::time::timeout(Duration::from_secs(5), pool.close()).await;
                if let Ok(mut c) = admin.connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes; panics with
/// `what` on timeout. The way tests wait for asynchronous effects.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A consumed event for handler tests: `event` in a new envelope (source
/// `test`, correlation id and record key `key`), read from offset 0 of
/// partition 0 of topic `test`, without a trace context.
pub fn consumed(event: impl Into<crate::Event>, key: &str) -> crate::consumer::ConsumedEvent {
    crate::consumer::ConsumedEvent {
        envelope: crate::Envelope::new("test", key, event),
        origin: crate::inbox::Origin {
            topic: "test".into(),
            partition: 0,
            offset: 0,
        },
        key: Some(key.into()),
        trace: None,
    }
}

/// Applies `event` with `handler` in a transaction of its own and commits
/// it; panics when the handler fails.
pub async fn apply(
    pool: &PgPool,
    handler: &dyn crate::consumer::Handler,
    event: &crate::consumer::ConsumedEvent,
) {
    let mut tx = pool.begin().await.expect("begin");
    handler.handle(&mut tx, event).await.expect("handle");
    tx.commit().await.expect("commit");
}

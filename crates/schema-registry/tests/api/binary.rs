//! The `schema-registry` binary: env configuration, startup, SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{expect_status, TestDatabase};

const BINARY: &str = env!("CARGO_BIN_EXE_schema-registry");

/// Starts the binary on a free port of its own; returns it and the port.
async fn start(db: &TestDatabase) -> (tokio::process::Child, u16) {
    let mut child = Command::new(BINARY)
        .env("SCHEMA_REGISTRY_DATABASE_URL", db.url())
        .env("SCHEMA_REGISTRY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();

    // The bound port is only known from the log line.
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("stdout is readable") {
            if let Some(rest) = line.split("listening").nth(1) {
                let addr = rest.split("127.0.0.1:").nth(1).expect("address is logged");
                let digits: String = addr.chars().take_while(char::is_ascii_digit).collect();
                return digits.parse::<u16>().expect("port is numeric");
            }
        }
        panic!("binary exited before listening");
    })
    .await
    .expect("binary listens within 30s");
    // The rest of the log is read, so a full pipe never holds the binary up.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .expect("request is sent");
    expect_status(ready, StatusCode::OK).await;
    (child, port)
}

/// Sends SIGTERM; the binary must exit successfully within `within`.
async fn terminate(child: &mut tokio::process::Child, within: Duration) {
    let pid = child.id().expect("child is running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("binary stops within {within:?}"))
        .expect("exit status");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn binary_starts_from_env_and_stops_on_sigterm() {
    let db = TestDatabase::new();
    let (mut child, _) = start(&db).await;
    terminate(&mut child, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_does_not_hold_up_sigterm() {
    let db = TestDatabase::new();
    let (mut child, port) = start(&db).await;
    // One connection that says nothing, one stuck halfway through its
    // request head: both stay open while the binary is asked to stop.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    let mut halfway = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    tokio::io::AsyncWriteExt::write_all(&mut halfway, b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    // A request on a third connection is answered only once the two above
    // were accepted (the listener hands out connections in order).
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .expect("request is sent");
    expect_status(ready, StatusCode::OK).await;
    terminate(&mut child, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn binary_rejects_invalid_config() {
    let output = Command::new(BINARY)
        .env("SCHEMA_REGISTRY_LISTEN_ADDR", "not-an-address")
        .output()
        .await
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SCHEMA_REGISTRY_LISTEN_ADDR"), "{stderr}");
}

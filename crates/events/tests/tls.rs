//! The PostgreSQL driver is built with TLS, so `sslmode` in a database URL
//! is honoured (`sslmode=verify-full&sslrootcert=...` in production; see
//! the README's Configuration).

use sqlx::{Connection, PgConnection};

/// `url` with its `sslmode` (the scripts' default URL has one) replaced by
/// `mode`.
fn with_sslmode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
        .collect();
    let param = format!("sslmode={mode}");
    pairs.push(&param);
    format!("{base}?{}", pairs.join("&"))
}

#[tokio::test]
async fn sslmode_is_honoured() {
    let url = orderflow_events::testing::admin_database_url();
    match PgConnection::connect(&with_sslmode(&url, "require")).await {
        // A server with TLS: the connection is encrypted.
        Ok(conn) => {
            conn.close().await.ok();
        }
        // The local test server has no TLS: refused for that reason, not
        // because the driver cannot speak TLS.
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains("without TLS support"), "{text}");
            assert!(text.to_ascii_lowercase().contains("tls"), "{text}");
        }
    }
    let plain = PgConnection::connect(&with_sslmode(&url, "prefer"))
        .await
        .expect("prefer falls back to a plain connection");
    plain.close().await.ok();
}

//! The PostgreSQL driver is built with TLS, so `sslmode` in a database URL
//! is honoured (`sslmode=verify-full&sslrootcert=...` in production; see
//! the README's Configuration).

use sqlx::{Connection, PgConnection};

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test]
async fn sslmode_is_honoured() {
    let url = orderflow_events::testing::admin_database_url();
    match PgConnection::connect(&with_param(&url, "sslmode=require")).await {
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
    let plain = PgConnection::connect(&with_param(&url, "sslmode=prefer"))
        .await
        .expect("prefer falls back to a plain connection");
    plain.close().await.ok();
}

//! `orderctl bench invariants`: what must hold in the five service
//! databases once a load has settled, one `name count` line per check
//! (count = violations; `info_` lines only inform). The orders' statuses
//! and lines are read from the order database and copied into a temporary
//! table in each of the others, so each check is one query where its rows
//! live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

/// Where the databases and the mailbox are, and what the load did.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The order service's database.
    #[arg(long)]
    pub order_db: String,
    /// The inventory service's database.
    #[arg(long)]
    pub inventory_db: String,
    /// The payment service's database.
    #[arg(long)]
    pub payment_db: String,
    /// The shipping service's database.
    #[arg(long)]
    pub shipping_db: String,
    /// The notification service's database.
    #[arg(long)]
    pub notification_db: String,
    /// Orders the load saw accepted.
    #[arg(long)]
    pub accepted: i64,
    /// SKUs the load stocked.
    #[arg(long)]
    pub skus: i64,
    /// Units each SKU was stocked with.
    #[arg(long)]
    pub stock: i64,
    /// The SMTP sink's Maildir (its `new/` holds the e-mails).
    #[arg(long)]
    pub mailbox: PathBuf,
}

/// One order as the other databases' checks need it.
struct Orders {
    id: Vec<String>,
    status: Vec<String>,
    reason_code: Vec<String>,
    payment_id: Vec<String>,
}

/// Connects to `url`, retrying for a minute while the server refuses
/// (other stacks on the machine can exhaust its connections for a while).
async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let mut attempt = 1;
    loop {
        match PgConnection::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if attempt < 30 => {
                eprintln!("orderctl bench: could not connect ({e}); retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("connecting to a service database"),
        }
    }
}

/// Runs each `(name, sql)` (a single count) and appends `name count`.
async fn counts(
    conn: &mut PgConnection,
    checks: &[(&str, &str)],
    out: &mut Vec<(String, i64)>,
) -> anyhow::Result<()> {
    for (name, sql) in checks {
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("check {name}"))?;
        out.push(((*name).to_owned(), n));
    }
    Ok(())
}

/// The orders, copied into temporary table `o` of `conn`.
async fn copy_orders(conn: &mut PgConnection, o: &Orders) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TEMP TABLE o (id text PRIMARY KEY, status text, reason_code text, payment_id text)",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO o SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
    )
    .bind(&o.id)
    .bind(&o.status)
    .bind(&o.reason_code)
    .bind(&o.payment_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The Message-ID of every e-mail in `mailbox/new`.
fn message_ids(mailbox: &Path) -> anyhow::Result<Vec<String>> {
    let dir = mailbox.join("new");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let text = std::fs::read_to_string(entry?.path())?;
        if let Some(id) = message_id(&text) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The `Message-ID` header of a message.
fn message_id(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_owned())
        })
}

/// Every check, in the order the script printed them.
pub async fn run(a: &Args) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = Vec::new();

    let mut db = connect(&a.order_db).await?;
    let accepted = a.accepted.to_string();
    let in_db_minus_accepted = format!("SELECT abs(count(*) - {accepted})::bigint FROM orders");
    counts(
        &mut db,
        &[
            ("orders_not_terminal", "SELECT count(*) FROM orders WHERE status NOT IN ('SHIPPED', 'DELIVERED', 'CANCELLED')"),
            ("orders_in_db_minus_accepted", &in_db_minus_accepted),
            ("shipped_order_without_payment_id", "SELECT count(*) FROM orders WHERE status IN ('SHIPPED', 'DELIVERED') AND payment_id IS NULL"),
            ("info_order_outbox_pending", "SELECT count(*) FROM outbox"),
        ],
        &mut out,
    )
    .await?;
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id::text, status, coalesce(reason_code, ''), coalesce(payment_id, '') FROM orders",
    )
    .fetch_all(&mut db)
    .await?;
    let orders = Orders {
        id: rows.iter().map(|r| r.0.clone()).collect(),
        status: rows.iter().map(|r| r.1.clone()).collect(),
        reason_code: rows.iter().map(|r| r.2.clone()).collect(),
        payment_id: rows.iter().map(|r| r.3.clone()).collect(),
    };
    // What the orders hold of each SKU: reserved (not yet shipped) and shipped.
    let expected: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT i->>'sku',
                coalesce(sum((i->>'quantity')::int) FILTER (WHERE status IN ('INVENTORY_RESERVED', 'PAID', 'SHIPPING_CREATED', 'SHIPPED')), 0)::bigint,
                coalesce(sum((i->>'quantity')::int) FILTER (WHERE status = 'DELIVERED'), 0)::bigint
           FROM orders, jsonb_array_elements(items) i GROUP BY 1",
    )
    .fetch_all(&mut db)
    .await?;
    db.close().await.ok();

    let mut db = connect(&a.inventory_db).await?;
    sqlx::query("CREATE TEMP TABLE e (sku text PRIMARY KEY, reserved bigint, shipped bigint)")
        .execute(&mut db)
        .await?;
    sqlx::query("INSERT INTO e SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])")
        .bind(expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>())
        .bind(expected.iter().map(|e| e.1).collect::<Vec<_>>())
        .bind(expected.iter().map(|e| e.2).collect::<Vec<_>>())
        .execute(&mut db)
        .await?;
    let not_conserved = format!(
        "SELECT count(*) FROM stock WHERE available + reserved + shipped <> {}",
        a.stock
    );
    let rows_minus_skus = format!("SELECT abs(count(*) - {})::bigint FROM stock", a.skus);
    counts(
        &mut db,
        &[
            // The initial stock = available + reserved + shipped, per SKU.
            ("stock_not_conserved", &not_conserved),
            ("stock_rows_minus_skus", &rows_minus_skus),
            // What is reserved or shipped matches the orders holding stock.
            ("stock_reserved_or_shipped_mismatch", "SELECT count(*) FROM stock s FULL JOIN e USING (sku) WHERE coalesce(s.reserved, 0) <> coalesce(e.reserved, 0) OR coalesce(s.shipped, 0) <> coalesce(e.shipped, 0)"),
            ("info_inventory_outbox_pending", "SELECT count(*) FROM outbox"),
        ],
        &mut out,
    )
    .await?;
    db.close().await.ok();

    let mut db = connect(&a.payment_db).await?;
    copy_orders(&mut db, &orders).await?;
    counts(
        &mut db,
        &[
            // Exactly one PROCESSED/REFUNDED payment, the one the order
            // names, per order that reached PAID.
            ("paid_order_without_its_payment", "SELECT count(*) FROM o LEFT JOIN payments p ON p.order_id = o.id WHERE o.payment_id <> '' AND (p.order_id IS NULL OR p.status NOT IN ('PROCESSED', 'REFUNDED') OR p.payment_id::text <> o.payment_id)"),
            ("orders_with_more_than_one_payment", "SELECT count(*) FROM (SELECT order_id FROM payments GROUP BY 1 HAVING count(*) > 1) d"),
            // None for orders cancelled before payment (a refund after a
            // deadline cancellation is the compensation).
            ("unpaid_cancelled_order_charged", "SELECT count(*) FROM o JOIN payments p ON p.order_id = o.id WHERE o.status = 'CANCELLED' AND o.payment_id = '' AND p.status IN ('PROCESSED', 'REFUNDED') AND NOT (p.status = 'REFUNDED' AND o.reason_code = 'SAGA_TIMEOUT')"),
            // No cancelled order keeps a charge without a refund.
            ("cancelled_order_charged_not_refunded", "SELECT count(*) FROM o JOIN payments p ON p.order_id = o.id WHERE o.status = 'CANCELLED' AND p.status = 'PROCESSED'"),
            ("charge_without_order", "SELECT count(*) FROM payments p LEFT JOIN o ON o.id = p.order_id WHERE o.id IS NULL AND p.status IN ('PROCESSED', 'REFUNDED')"),
            ("info_payment_outbox_pending", "SELECT count(*) FROM outbox"),
        ],
        &mut out,
    )
    .await?;
    db.close().await.ok();

    let mut db = connect(&a.shipping_db).await?;
    copy_orders(&mut db, &orders).await?;
    counts(
        &mut db,
        &[
            ("shipped_order_without_shipment", "SELECT count(*) FROM o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.status IN ('SHIPPED', 'DELIVERED') AND (s.order_id IS NULL OR s.status NOT IN ('CREATED', 'DISPATCHED', 'DELIVERED'))"),
            ("cancelled_order_with_live_shipment", "SELECT count(*) FROM o JOIN shipments s ON s.order_id = o.id WHERE o.status = 'CANCELLED' AND s.status IN ('CREATED', 'DISPATCHED', 'DELIVERED')"),
            ("info_shipping_outbox_pending", "SELECT count(*) FROM outbox"),
        ],
        &mut out,
    )
    .await?;
    db.close().await.ok();

    let mut db = connect(&a.notification_db).await?;
    copy_orders(&mut db, &orders).await?;
    sqlx::query("CREATE TEMP TABLE m (message_id text)")
        .execute(&mut db)
        .await?;
    sqlx::query("INSERT INTO m SELECT * FROM unnest($1::text[])")
        .bind(message_ids(&a.mailbox)?)
        .execute(&mut db)
        .await?;
    counts(
        &mut db,
        &[
            // Every e-mail recorded as sent reached the SMTP server.
            ("sent_email_not_in_mailbox", "SELECT count(*) FROM notifications n WHERE n.status = 'SENT' AND NOT EXISTS (SELECT 1 FROM m WHERE m.message_id = n.message_id)"),
            ("mailbox_email_not_recorded", "SELECT count(*) FROM m WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.message_id = m.message_id)"),
            // At least once: a crash between the server's acceptance and
            // the commit sends again.
            ("info_emails_received_twice", "SELECT count(*) FROM (SELECT message_id FROM m GROUP BY 1 HAVING count(*) > 1) d"),
            ("shipped_order_without_confirmation_email", "SELECT count(*) FROM o WHERE o.status IN ('SHIPPED', 'DELIVERED') AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.order_id = o.id AND n.kind = 'ORDER_CONFIRMATION')"),
            ("cancelled_order_without_cancellation_email", "SELECT count(*) FROM o WHERE o.status = 'CANCELLED' AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.order_id = o.id AND n.kind = 'ORDER_CANCELLED')"),
            ("info_emails_failed", "SELECT count(*) FROM notifications WHERE status = 'FAILED'"),
            ("info_notification_outbox_pending", "SELECT count(*) FROM outbox"),
        ],
        &mut out,
    )
    .await?;
    db.close().await.ok();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_read_from_the_headers_only() {
        let mail = "Subject: hi\r\nmessage-ID: <order-confirmation.1@orderflow>\r\n\r\nMessage-ID: <not-this>\r\n";
        assert_eq!(
            message_id(mail).as_deref(),
            Some("<order-confirmation.1@orderflow>")
        );
        assert_eq!(
            message_id("Subject: none\r\n\r\nMessage-ID: <body>\r\n"),
            None
        );
    }
}

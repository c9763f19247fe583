//! Replay on a real stack.
//!
//! The order journal (the order service's projection of every saga event,
//! in its own consumer group) rebuilt from the log by `orderctl replay
//! --projection order-journal` equals the live one, again when repeated;
//! damage done to it (as a projection bug would) is repaired for one saga
//! only with `--correlation-id`, and by a full replay for all; the live
//! projection goes on after each swap. The service's runtime role cannot
//! run a rebuild.
//!
//! `orderctl replay --group G --to-timestamp T` refuses while the group's
//! service runs; with the service stopped it moves the group back, the
//! restarted service reads those records again, and its inbox skips them:
//! one shipment, one `ShippingCreated`.
//!
//! Each replay is on the audit trail.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use order_service::db::journal::{self, JournalRow, Table};
use orderflow_e2e::client::count_events;
use orderflow_e2e::stack::roles;
use orderflow_e2e::{OrderBody, Service, Stack};
use serde_json::Value;
use sqlx::PgPool;

/// Who replays, for the audit trail.
const ACTOR: &str = "ops-replay";

/// The live journal, every row.
async fn live(pool: &PgPool) -> Vec<JournalRow> {
    let mut conn = pool.acquire().await.expect("a connection");
    journal::all(&mut conn, Table::Live)
        .await
        .expect("reading order_journal")
}

/// Waits until the live journal has every event of `order`'s timeline.
async fn journaled(stack: &Stack, pool: &PgPool, order: &str) {
    stack
        .wait_for(
            &format!("the journal to hold the timeline of {order}"),
            || async {
                let want: BTreeSet<String> = stack
                    .timeline(order)
                    .await
                    .iter()
                    .map(|e| e.event_id.to_string())
                    .collect();
                let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
                let have: BTreeSet<String> = journal::of_correlation(&mut conn, order)
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|r| r.event_id.to_string())
                    .collect();
                if want.is_subset(&have) {
                    Ok(())
                } else {
                    Err(format!("timeline {want:?}, journal {have:?}"))
                }
            },
        )
        .await;
}

/// Waits until the live journal has a row for every event on the log (a
/// dry run counts them), so that nothing is still on its way to it, and
/// returns it.
async fn settled(stack: &Stack, pool: &PgPool) -> Vec<JournalRow> {
    stack
        .wait_for("the journal to catch up with the log", || async {
            let (ok, out) = replay(stack, &["--dry-run"]).await;
            if !ok {
                return Err(out);
            }
            let events: usize = out
                .split_once("): ")
                .and_then(|(_, rest)| rest.split_once(" events"))
                .and_then(|(n, _)| n.parse().ok())
                .ok_or_else(|| format!("no event count in {out:?}"))?;
            let rows = live(pool).await;
            if rows.len() == events {
                Ok(rows)
            } else {
                Err(format!("{} rows for {events} events", rows.len()))
            }
        })
        .await
}

/// `orderctl replay <args>` as the order database's owner.
async fn replay(stack: &Stack, args: &[&str]) -> (bool, String) {
    let owner = roles::as_role(
        stack.database_url(Service::Order),
        &roles::owner(Service::Order),
    )
    .expect("owner URL");
    let mut all = vec!["replay", "--projection", "order-journal"];
    all.extend_from_slice(args);
    stack
        .orderctl(&all, &[("DATABASE_URL", &owner), ("ORDERCTL_ACTOR", ACTOR)])
        .await
}

/// The actions `ACTOR` took, by name.
async fn actions(stack: &Stack) -> Vec<Value> {
    let (ok, out) = stack
        .orderctl(&["audit", "--json", "--actor", ACTOR], &[])
        .await;
    assert!(ok, "orderctl audit --actor: {out}");
    let trail: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    trail.into_iter().map(|e| e["action"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_order_journal_rebuilt_from_the_log_equals_the_live_one() {
    let stack = Stack::start_default().await;
    let pool = stack.db(Service::Order).await;
    let sku = stack.sku("REPLAY");
    stack.set_stock(&sku, 10).await;
    let a = stack.create_order(&OrderBody::new(&sku, 1)).await;
    let b = stack.create_order(&OrderBody::new(&sku, 1)).await;
    for id in [&a, &b] {
        stack.wait_status(id, "SHIPPED").await;
        journaled(&stack, &pool, id).await;
    }
    let before = settled(&stack, &pool).await;
    assert!(
        before.iter().any(|r| r.event_type == "InventoryAdjusted"),
        "the journal has the stock events too: {before:#?}"
    );
    // Its rows are idempotent by event id, so its group keeps no inbox.
    let inbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer_group LIKE '%.journal'")
            .fetch_one(&pool)
            .await
            .expect("counting the journal's inbox rows");
    assert_eq!(inbox, 0, "the journal's group writes no inbox rows");

    // The API serves an order's journal, oldest first.
    let r = stack
        .get(Service::Order, &format!("/orders/{a}/journal"))
        .await
        .expect(200);
    let served: Vec<&str> = r.json["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["eventId"].as_str().expect("an id"))
        .collect();
    let mut rows_of_a: Vec<&JournalRow> = before.iter().filter(|r| r.correlation_id == a).collect();
    rows_of_a.sort_by_key(|r| (r.occurred_at, r.event_id));
    let want: Vec<String> = rows_of_a.iter().map(|r| r.event_id.to_string()).collect();
    assert_eq!(served, want, "{}", r.describe());

    // Rebuilt from the beginning: the same rows. Twice: still the same.
    for round in 1..=2 {
        let (ok, out) = replay(&stack, &[]).await;
        assert!(ok, "replay {round}: {out}");
        assert!(out.contains("swapped in"), "{out}");
        assert_eq!(live(&pool).await, before, "after replay {round}: {out}");
    }

    // A projection bug: one of A's rows lost, one of B's wrong.
    sqlx::query(
        "DELETE FROM order_journal WHERE event_id = \
         (SELECT event_id FROM order_journal WHERE correlation_id = $1 LIMIT 1)",
    )
    .bind(&a)
    .execute(&pool)
    .await
    .expect("damage A");
    sqlx::query("UPDATE order_journal SET source = 'nobody' WHERE correlation_id = $1")
        .bind(&b)
        .execute(&pool)
        .await
        .expect("damage B");
    let damaged_b: Vec<JournalRow> = live(&pool)
        .await
        .into_iter()
        .filter(|r| r.correlation_id == b)
        .collect();

    // A's saga alone: A repaired, B's rows untouched.
    let (ok, out) = replay(&stack, &["--correlation-id", &a]).await;
    assert!(ok, "{out}");
    let now = live(&pool).await;
    let of = |rows: &[JournalRow], id: &str| -> Vec<JournalRow> {
        rows.iter()
            .filter(|r| r.correlation_id == id)
            .cloned()
            .collect()
    };
    assert_eq!(of(&now, &a), of(&before, &a), "{out}");
    assert_eq!(of(&now, &b), damaged_b, "{out}");

    // Everything: B repaired too.
    let (ok, out) = replay(&stack, &[]).await;
    assert!(ok, "{out}");
    assert_eq!(live(&pool).await, before, "{out}");

    // The live projection goes on into the swapped-in table.
    let since = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let c = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&c, "SHIPPED").await;
    journaled(&stack, &pool, &c).await;
    let with_c = settled(&stack, &pool).await;
    assert!(with_c.len() > before.len());

    // From a time on: the same rows again.
    let (ok, out) = replay(&stack, &["--from-timestamp", &since]).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("from {since}")), "{out}");
    assert_eq!(live(&pool).await, with_c, "{out}");

    // A dry run reads and changes nothing.
    sqlx::query("DELETE FROM order_journal WHERE correlation_id = $1")
        .bind(&c)
        .execute(&pool)
        .await
        .expect("damage C");
    let without_c = live(&pool).await;
    let (ok, out) = replay(&stack, &["--dry-run"]).await;
    assert!(ok && out.contains("dry run"), "{out}");
    assert_eq!(live(&pool).await, without_c, "{out}");
    let (ok, out) = replay(&stack, &["--correlation-id", &c]).await;
    assert!(ok, "{out}");
    assert_eq!(live(&pool).await, with_c, "{out}");

    // The service's runtime role may not swap tables: a clear error, and
    // the journal as it was.
    let app = roles::as_role(
        stack.database_url(Service::Order),
        &roles::app(Service::Order),
    )
    .expect("app URL");
    let (ok, out) = stack
        .orderctl(
            &["replay", "--projection", "order-journal"],
            &[("DATABASE_URL", &app), ("ORDERCTL_ACTOR", ACTOR)],
        )
        .await;
    assert!(!ok && out.contains("owner role"), "{out}");
    assert_eq!(live(&pool).await, with_c, "{out}");

    // Bad flags: a clear error.
    for bad in [
        &["replay"][..],
        &["replay", "--projection", "order-journal", "--group", "g"],
        &["replay", "--projection", "nope"],
        &[
            "replay",
            "--projection",
            "order-journal",
            "--from-timestamp",
            "yesterday",
        ],
    ] {
        let (ok, out) = stack.orderctl(bad, &[]).await;
        assert!(!ok && out.contains("error"), "{bad:?}: {out}");
    }

    // Six rebuilds on the audit trail, A's under A's order.
    let all = actions(&stack).await;
    let rebuilt: Vec<Value> = all
        .iter()
        .filter(|a| a["action"] == "projection.rebuilt")
        .cloned()
        .collect();
    assert_eq!(rebuilt.len(), 6, "{rebuilt:#?}");
    // Each recorded before its swap too.
    let started = all
        .iter()
        .filter(|a| a["action"] == "projection.rebuild_started")
        .count();
    assert_eq!(started, 6, "{all:#?}");
    assert_eq!(
        rebuilt
            .iter()
            .filter(|r| r["orderId"] == a.as_str())
            .count(),
        1,
        "{rebuilt:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_group_moved_back_reads_again_without_a_second_effect() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("REWIND");
    stack.set_stock(&sku, 10).await;
    let since = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let a = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&a, "SHIPPED").await;
    let group = format!("{}shipping-service", stack.prefix);
    let rewind = |extra: &'static [&'static str]| {
        let (group, since) = (group.clone(), since.clone());
        let stack = &stack;
        async move {
            let mut args = vec!["replay", "--group", &group, "--to-timestamp", &since];
            args.extend_from_slice(extra);
            stack.orderctl(&args, &[("ORDERCTL_ACTOR", ACTOR)]).await
        }
    };

    // Refused while shipping runs.
    let (ok, out) = rewind(&[]).await;
    assert!(!ok && out.contains("active member"), "{out}");

    // Stopped: a dry run says what would move and moves nothing.
    assert!(stack.terminate(Service::Shipping).await.success());
    let (ok, out) = stack
        .wait_for("the stopped group to have no members", || async {
            let (ok, out) = rewind(&["--dry-run"]).await;
            if out.contains("active member") {
                Err(out)
            } else {
                Ok((ok, out))
            }
        })
        .await;
    assert!(ok && out.contains("would read"), "{out}");
    let (ok, out) = rewind(&[]).await;
    assert!(ok && out.contains("moved"), "{out}");
    // Nothing committed after the time any more: a second move is a no-op.
    let (ok, again) = rewind(&[]).await;
    assert!(ok && again.contains("nothing to move"), "{again}");

    // Started again: it reads A's payment again and skips it.
    stack.start_service(Service::Shipping).await;
    stack
        .wait_assigned(Service::Shipping, Duration::from_secs(60))
        .await;
    stack
        .wait_for("shipping to skip the re-read PaymentProcessed", || async {
            let seen = stack
                .duplicates_seen(Service::Shipping, "PaymentProcessed")
                .await;
            if seen >= 1.0 {
                Ok(())
            } else {
                Err(format!("{seen} duplicates"))
            }
        })
        .await;
    assert_eq!(
        stack
            .count(
                Service::Shipping,
                "SELECT count(*) FROM shipments WHERE order_id = $1",
                &a,
            )
            .await,
        1
    );
    assert_eq!(
        count_events(&stack.timeline(&a).await, "ShippingCreated"),
        1
    );

    // The saga goes on.
    let b = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&b, "SHIPPED").await;

    // A group orderflow does not know needs its topics named.
    let (ok, out) = stack
        .orderctl(
            &[
                "replay",
                "--group",
                "someone-else",
                "--to-timestamp",
                &since,
            ],
            &[],
        )
        .await;
    assert!(!ok && out.contains("--topic"), "{out}");

    let all = actions(&stack).await;
    let stages: Vec<&Value> = all
        .iter()
        .filter(|a| a["subject"] == format!("group:{group}").as_str())
        .collect();
    assert_eq!(stages.len(), 2, "{all:#?}");
    assert_eq!(stages[0]["action"], "consumer_group.rewind_started");
    assert_eq!(stages[1]["action"], "consumer_group.rewound");
    assert_eq!(stages[0]["detail"], stages[1]["detail"], "{stages:#?}");
}

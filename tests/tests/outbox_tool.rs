//! `orderctl outbox` against a real service database: a row the order
//! service's relay cannot encode is set aside, listed, moved back with
//! `retry` (which the audit trail records), and set aside again by the relay
//! (still broken, never lost).

use orderflow_e2e::{Service, Stack};
use serde_json::Value;

/// `orderctl outbox <args>` on the order service's database.
async fn outbox(stack: &Stack, args: &[&str]) -> (bool, String) {
    let db = stack.database_url(Service::Order);
    stack
        .orderctl(
            args,
            &[("DATABASE_URL", db), ("ORDERCTL_ACTOR", "ops-outbox")],
        )
        .await
}

async fn set_aside(stack: &Stack) -> Result<Vec<Value>, String> {
    let (ok, text) = outbox(stack, &["outbox", "failed", "--json"]).await;
    let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    if ok {
        Ok(rows)
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_aside_row_is_listed_and_sent_back() {
    let stack = Stack::start_default().await;
    assert_eq!(set_aside(&stack).await.expect("list"), Vec::<Value>::new());
    let topic = format!("{}order-events", stack.prefix);
    sqlx::query(
        "INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope) \
         VALUES (gen_random_uuid(), 'Bogus', $1, 'order-bogus', '{\"eventType\": \"Bogus\"}')",
    )
    .bind(&topic)
    .execute(&stack.db(Service::Order).await)
    .await
    .expect("a broken row");
    let rows = stack
        .wait_for("the relay to set the row aside", || async {
            let rows = set_aside(&stack).await?;
            if rows.len() == 1 {
                Ok(rows)
            } else {
                Err(format!("{rows:?}"))
            }
        })
        .await;
    assert_eq!(rows[0]["eventType"], "Bogus", "{rows:?}");
    assert_eq!(rows[0]["partitionKey"], "order-bogus", "{rows:?}");
    let id = rows[0]["id"].as_i64().expect("id");
    let (ok, table) = outbox(&stack, &["outbox", "failed"]).await;
    assert!(ok && table.contains("Bogus"), "{table}");

    let (ok, text) = outbox(&stack, &["outbox", "retry", "--id", &id.to_string()]).await;
    assert!(ok && text.contains("back in the outbox"), "{text}");
    // The retry is on the audit trail before it is made (the row asked
    // for) and after (the event it sent back).
    let event_id = rows[0]["eventId"].as_str().expect("eventId");
    let (ok, text) = stack
        .orderctl(&["audit", "--actor", "ops-outbox", "--json"], &[])
        .await;
    assert!(ok, "{text}");
    let trail: Vec<Value> = serde_json::from_str(&text).expect("the trail as JSON");
    assert_eq!(trail.len(), 2, "{trail:#?}");
    assert_eq!(
        trail[0]["action"]["action"], "outbox.retry_started",
        "{trail:#?}"
    );
    assert_eq!(
        trail[0]["action"]["detail"]["rows"],
        id.to_string(),
        "{trail:#?}"
    );
    assert_eq!(trail[1]["action"]["action"], "outbox.retried", "{trail:#?}");
    assert_eq!(
        trail[1]["action"]["eventIds"],
        serde_json::json!([event_id]),
        "{trail:#?}"
    );
    stack
        .wait_for(
            "the relay to set it aside again, under a new id",
            || async {
                let rows = set_aside(&stack).await?;
                match rows.as_slice() {
                    [r] if r["id"].as_i64() != Some(id) && r["eventType"] == "Bogus" => Ok(()),
                    _ => Err(format!("{rows:?}")),
                }
            },
        )
        .await;
    let (ok, text) = outbox(&stack, &["outbox", "retry", "--id", &id.to_string()]).await;
    assert!(!ok && text.contains("no set-aside row matched"), "{text}");
    // Neither ids nor --all: refused by the command line, nothing moved.
    let (ok, text) = outbox(&stack, &["outbox", "retry"]).await;
    assert!(!ok && text.contains("--id"), "{text}");
}

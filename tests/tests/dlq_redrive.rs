//! Dead letters redriven after the fix, on a real stack: the shipping
//! service starts with `PaymentProcessed` quarantined, so two paid orders'
//! events go to the dead letters and the orders wait. Restarted without the
//! quarantine (the fix), `orderctl dlq redrive --correlation-id` sends back
//! one order's event only: that order ships, the other still waits. Sent
//! back again, it changes nothing (the inbox knows its `eventId`); then the
//! rest goes back and the other order ships too. Each order has one
//! shipment and one `ShippingCreated`, and each redrive is on the audit
//! trail of the order it touched.

use std::time::Duration;

use orderflow_e2e::client::{count_events, parse_metrics};
use orderflow_e2e::{OrderBody, Service, Stack, StackOptions, Status};
use serde_json::Value;

/// A series of shipping's `/metrics` (0 when absent).
async fn shipping_metric(stack: &Stack, series: &str) -> f64 {
    let r = stack.get(Service::Shipping, "/metrics").await.expect(200);
    parse_metrics(&r.text).get(series).copied().unwrap_or(0.0)
}

/// Who redrives, for the audit trail.
const OPERATOR: &[(&str, &str)] = &[("ORDERCTL_ACTOR", "ops-redrive")];

async fn shipments(stack: &Stack, order: &str) -> i64 {
    stack
        .count(
            Service::Shipping,
            "SELECT count(*) FROM shipments WHERE order_id = $1",
            order,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quarantined_events_are_redriven_after_the_fix_and_applied_once() {
    let stack = Stack::start(StackOptions {
        env: vec![(
            Service::Shipping,
            "CONSUMER_QUARANTINE".into(),
            "PaymentProcessed".into(),
        )],
        ..StackOptions::default()
    })
    .await;
    let sku = stack.sku("REDRIVE");
    stack.set_stock(&sku, 10).await;
    let a = stack.create_order(&OrderBody::new(&sku, 1)).await;
    let b = stack.create_order(&OrderBody::new(&sku, 1)).await;
    let dlq = format!("{}payment-events.dlq", stack.prefix);
    let group = format!("{}shipping-service", stack.prefix);
    let summary = stack.wait_for_dead_letters(&dlq, "quarantined", 2).await;
    assert_eq!(summary[&dlq]["byGroup"][&group], 2, "{summary}");
    let depth = format!(r#"orderflow_dlq_records{{topic="{dlq}"}}"#);
    assert_eq!(shipping_metric(&stack, &depth).await, 2.0, "{depth}");
    for id in [&a, &b] {
        assert_eq!(stack.order(id).await.status, Status::Paid);
        assert_eq!(shipments(&stack, id).await, 0);
    }

    // The fix: shipping without the quarantine.
    stack.terminate(Service::Shipping).await;
    stack
        .set_service_env(Service::Shipping, "CONSUMER_QUARANTINE", None)
        .await;
    stack.start_service(Service::Shipping).await;
    stack
        .wait_assigned(Service::Shipping, Duration::from_secs(60))
        .await;

    // Asking for nothing, or for what is not there, sends nothing.
    let (ok, text) = stack.orderctl(&["dlq", "redrive"], &[]).await;
    assert!(!ok && text.contains("--all"), "{text}");
    let (ok, text) = stack
        .orderctl(&["dlq", "redrive", "--correlation-id", "nope"], &[])
        .await;
    assert!(!ok && text.contains("no dead letter matches"), "{text}");
    let (ok, text) = stack
        .orderctl(
            &["dlq", "redrive", "--correlation-id", &a, "--dry-run"],
            &[],
        )
        .await;
    assert!(ok && text.matches("would send back").count() == 1, "{text}");

    // Order A's event only.
    let (ok, text) = stack
        .orderctl(&["dlq", "redrive", "--correlation-id", &a], OPERATOR)
        .await;
    assert!(ok && text.matches("sent back").count() == 1, "{text}");
    stack.wait_status(&a, "SHIPPED").await;
    assert_eq!(
        stack.order(&b).await.status,
        Status::Paid,
        "B was not sent back"
    );
    assert_eq!(shipments(&stack, &b).await, 0);

    // Again: the same eventId, so shipping's inbox skips it.
    let before = stack
        .duplicates_seen(Service::Shipping, "PaymentProcessed")
        .await;
    let (ok, text) = stack
        .orderctl(&["dlq", "redrive", "--correlation-id", &a], OPERATOR)
        .await;
    assert!(ok, "{text}");
    stack
        .wait_for(
            "shipping to skip the second copy as a duplicate",
            || async {
                let now = stack
                    .duplicates_seen(Service::Shipping, "PaymentProcessed")
                    .await;
                if now > before {
                    Ok(())
                } else {
                    Err(format!("{now} duplicates"))
                }
            },
        )
        .await;

    // The rest of shipping's dead letters: B ships too.
    let (ok, text) = stack
        .orderctl(
            &[
                "dlq",
                "redrive",
                "--topic",
                &dlq,
                "--group",
                &group,
                "--reason",
                "quarantined",
            ],
            OPERATOR,
        )
        .await;
    assert!(ok, "{text}");
    stack.wait_status(&b, "SHIPPED").await;
    // Shipping took up four redriven records: A, A again, then A and B.
    let redriven = format!(
        r#"orderflow_events_redriven_total{{group="{p}shipping-service",topic="{p}payment-events"}}"#,
        p = stack.prefix
    );
    stack
        .wait_for("shipping to count four redriven records", || async {
            let n = shipping_metric(&stack, &redriven).await;
            if n == 4.0 {
                Ok(())
            } else {
                Err(format!("{redriven} = {n}"))
            }
        })
        .await;
    for id in [&a, &b] {
        assert_eq!(shipments(&stack, id).await, 1, "{id}");
        let events = stack.timeline(id).await;
        assert_eq!(
            count_events(&events, "ShippingCreated"),
            1,
            "{id}: {events:?}"
        );
        assert_eq!(
            count_events(&events, "PaymentProcessed"),
            1,
            "{id}: {events:?}"
        );
    }

    // Each redrive is on the audit trail of the orders it sent back, by the
    // operator orderctl was told acts: A three times, B once, one event each.
    for (id, times) in [(&a, 3), (&b, 1)] {
        let (ok, text) = stack
            .orderctl(&["audit", "--order", id, "--json"], &[])
            .await;
        assert!(ok, "{text}");
        let trail: Vec<Value> = serde_json::from_str(&text).expect("the trail as JSON");
        let redrives: Vec<&Value> = trail
            .iter()
            .filter(|e| e["action"]["action"] == "dead_letters.redriven")
            .collect();
        assert_eq!(redrives.len(), times, "{id}: {trail:#?}");
        // Each recorded before it was made too.
        let started = trail
            .iter()
            .filter(|e| e["action"]["action"] == "dead_letters.redrive_started")
            .count();
        assert_eq!(started, times, "{id}: {trail:#?}");
        for r in redrives {
            assert_eq!(r["action"]["actor"], "ops-redrive", "{r:#}");
            assert_eq!(r["action"]["orderId"], id.as_str(), "{r:#}");
            assert_eq!(
                r["action"]["eventIds"].as_array().map(Vec::len),
                Some(1),
                "{r:#}"
            );
        }
    }
}

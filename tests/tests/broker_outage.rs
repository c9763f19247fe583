//! A broker outage, as Kubernetes would see it: with the stack's own broker
//! stopped, every service stays ready (`/health/ready` is the database
//! only, so no pod leaves its Service), `/health/detail` reports the broker
//! down, `POST /orders` is still accepted, and the order completes once the
//! broker is back, from the events the outbox held.

use std::time::Duration;

use orderflow_e2e::{OrderBody, Service, Stack, StackOptions, Status, Stop};

/// How long a restarted broker's consumers may take to hold partitions
/// again (each member rejoins its group).
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_stay_ready_and_accept_orders_while_the_broker_is_down() {
    let stack = Stack::start(StackOptions {
        own_broker: true,
        ..StackOptions::default()
    })
    .await;
    let sku = stack.sku("OUTAGE");
    stack.set_stock(&sku, 10).await;

    stack.stop_broker(Stop::Term).await;

    // Every service notices: its detail page says the broker is down...
    for svc in Service::ALL {
        stack
            .wait_for_json(
                svc,
                "/health/detail",
                &format!("{svc} to report the broker down"),
                |d| d["status"] == "degraded" && d["checks"]["broker"]["status"] == "down",
            )
            .await;
        // ... and it stays ready, on a database that answers.
        let ready = stack.get(svc, "/health/ready").await.expect(200);
        assert_eq!(ready.json["status"], "ready", "{svc}: {}", ready.text);
        assert_eq!(
            ready.json["checks"]["database"]["status"], "up",
            "{svc}: {}",
            ready.text
        );
    }
    let metrics = stack.get(Service::Order, "/metrics").await.expect(200);
    assert!(
        metrics
            .text
            .contains(r#"orderflow_dependency_up{dependency="broker"} 0"#),
        "{}",
        metrics.text
    );

    // An order is accepted and waits in the outbox.
    let id = stack.create_order(&OrderBody::new(&sku, 2)).await;
    let order = stack.order(&id).await;
    assert_eq!(order.status, Status::Pending, "{order:?}");
    stack
        .wait_for_json(
            Service::Order,
            "/health/detail",
            "the order's event to wait in the outbox",
            |d| d["outbox"]["backlog"].as_i64().is_some_and(|n| n >= 1),
        )
        .await;

    // The broker comes back: the order completes, and every check is up.
    stack.start_broker().await;
    for svc in Service::ALL {
        stack.wait_assigned(svc, ASSIGN_TIMEOUT).await;
    }
    stack.wait_status(&id, "SHIPPED").await;
    for svc in Service::ALL {
        stack
            .wait_for_json(
                svc,
                "/health/detail",
                &format!("{svc} to report every dependency up"),
                |d| d["status"] == "ok",
            )
            .await;
    }
}

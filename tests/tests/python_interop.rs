//! An integrator's consumer in Python (confluent_kafka + AvroDeserializer,
//! no orderflow code: examples/python/consume_orders.py) decodes the
//! events of an order from the stack's topic.

use std::process::Stdio;
use std::time::Duration;

use orderflow_e2e::{env, OrderBody, Stack};
use serde_json::Value;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_avro_consumer_decodes_order_created() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("PY");
    stack.set_stock(&sku, 5).await;
    let id = stack.create_order(&OrderBody::new(&sku, 1)).await;
    // Once SHIPPED, order-events holds OrderCreated, OrderConfirmed and
    // OrderShipped of this order (the topics are the stack's own).
    stack.wait_status(&id, "SHIPPED").await;
    let timeline = stack.timeline(&id).await;
    let created = timeline
        .iter()
        .find(|e| e.event_type == "OrderCreated")
        .expect("OrderCreated in the timeline")
        .clone();

    let topic = format!("{}order-events", stack.prefix);
    let script = env::workspace_root().join("examples/python/consume_orders.py");
    let run = Command::new(env::python())
        .arg(&script)
        .args(["--bootstrap", &env::kafka_bootstrap_servers()])
        .args(["--registry", &env::registry_url()])
        .args(["--topic", &topic])
        .args(["--group", &format!("{}-python", stack.id)])
        .args(["--max", "3", "--idle-timeout", "30", "--json"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("consume_orders.py finished within 180 s")
        .expect("running consume_orders.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "consume_orders.py failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let records: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!records.is_empty(), "no records; stderr:\n{stderr}");
    let first = &records[0];
    assert_eq!(first["event"]["eventType"], "OrderCreated", "{stdout}");
    let rec = records
        .iter()
        .find(|r| {
            r["event"]["eventType"] == "OrderCreated"
                && r["event"]["data"]["orderId"] == id.as_str()
        })
        .unwrap_or_else(|| panic!("no OrderCreated of {id} among:\n{stdout}"));
    assert_eq!(rec["topic"], topic.as_str(), "{rec}");
    assert_eq!(
        rec["key"],
        id.as_str(),
        "partition key is the order id: {rec}"
    );
    assert_eq!(
        rec["event"]["eventId"],
        created.event_id.to_string().as_str(),
        "{rec}"
    );
    assert_eq!(
        rec["event"]["correlationId"],
        created.correlation_id.as_str(),
        "{rec}"
    );
    assert_eq!(rec["event"]["correlationId"], id.as_str(), "{rec}");
    assert!(rec["event"]["causationId"].is_null(), "{rec}");
    assert_eq!(rec["event"]["source"], "order-service", "{rec}");
    assert!(
        rec["headers"]["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-")),
        "traceparent header: {rec}"
    );
    for r in &records {
        assert_eq!(r["event"]["correlationId"], id.as_str(), "{r}");
    }
}

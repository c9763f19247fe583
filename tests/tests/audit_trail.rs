//! The audit trail on a real stack. An operator (a token of their own)
//! dispatches and delivers one order; a customer cancels another. `orderctl
//! audit --order` must give each order's whole history: exactly the events
//! of its timeline, plus exactly the actions taken on it, each naming who
//! took it and the events it produced. `orderctl audit --actor` gives one
//! subject's actions, the stock change and the card registration included.

use std::collections::BTreeSet;

use orderflow_e2e::client::send;
use orderflow_e2e::{env, OrderBody, Service, Stack, TimelineEventJson};
use orderflow_service::auth::Role;
use reqwest::Method;
use serde_json::Value;

/// `orderctl audit <args> --json`, or `None` while it finds nothing.
async fn audit(stack: &Stack, args: &[&str]) -> Option<Vec<Value>> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let (ok, out) = stack.orderctl(&all, &[]).await;
    if !ok {
        assert!(
            out.contains("nothing recorded"),
            "orderctl audit {args:?} failed: {out}"
        );
        return None;
    }
    Some(serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
}

/// A POST as `token`'s holder rather than the harness.
async fn post_as(stack: &Stack, token: &str, svc: Service, path: &str) -> orderflow_e2e::Resp {
    send(stack.request(Method::POST, svc, path).bearer_auth(token)).await
}

fn ids(events: &[Value], key: &str) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e[key].as_str().expect("an id").to_owned())
        .collect()
}

fn timeline_ids(timeline: &[TimelineEventJson]) -> BTreeSet<String> {
    timeline.iter().map(|e| e.event_id.to_string()).collect()
}

/// The trail's business events (not actions) and its actions.
fn split(trail: &[Value]) -> (Vec<&Value>, Vec<&Value>) {
    trail.iter().partition(|e| e["action"].is_null())
}

/// Waits until the trail of `order` holds exactly its timeline's events and
/// `actions` actions, and returns it with the timeline.
async fn complete_trail(
    stack: &Stack,
    order: &str,
    actions: usize,
) -> (Vec<Value>, Vec<TimelineEventJson>) {
    stack
        .wait_for(
            &format!("the audit trail of {order} to match its timeline"),
            || async {
                let timeline = stack.timeline(order).await;
                let trail = audit(stack, &["--order", order])
                    .await
                    .ok_or("no trail yet")?;
                let (events, acts) = split(&trail);
                let recorded: Vec<Value> = events.into_iter().cloned().collect();
                let (want, got) = (timeline_ids(&timeline), ids(&recorded, "eventId"));
                if want == got && acts.len() == actions {
                    Ok((trail, timeline))
                } else {
                    Err(format!(
                        "timeline {want:?}, trail {got:?} with {} of {actions} actions",
                        acts.len()
                    ))
                }
            },
        )
        .await
}

/// The one action of `trail` named `name`.
fn action<'a>(trail: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = trail
        .iter()
        .filter(|e| e["action"]["action"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name} in {trail:#?}");
    found[0]
}

/// The id of the one event of `type` in `timeline`.
fn event_id(timeline: &[TimelineEventJson], event_type: &str) -> String {
    let found: Vec<&TimelineEventJson> = timeline
        .iter()
        .filter(|e| e.event_type == event_type)
        .collect();
    assert_eq!(found.len(), 1, "one {event_type} in {timeline:#?}");
    found[0].event_id.to_string()
}

fn assert_oldest_first(trail: &[Value]) {
    let times: Vec<&str> = trail
        .iter()
        .map(|e| e["timestamp"].as_str().expect("timestamp"))
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "the trail is oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_orders_trail_is_its_timeline_plus_the_actions_taken_on_it() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("AUDIT");
    stack.set_stock(&sku, 10).await;
    let ops = env::token_for("ops-audit", &[Role::Operator]).expect("token");

    // An operator dispatches and delivers a shipped order.
    let a = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&a, "SHIPPED").await;
    for step in ["dispatch", "deliver"] {
        let r = post_as(
            &stack,
            &ops,
            Service::Shipping,
            &format!("/shipments/{a}/{step}"),
        )
        .await;
        assert_eq!(r.status, 200, "{step}: {}", r.describe());
    }
    stack.wait_for_events(&a, &["OrderDelivered"]).await;

    // A customer cancels their own order while its e-mail waits (the
    // notification service is down, so the order stays SHIPPING_CREATED).
    assert!(stack.terminate(Service::Notification).await.success());
    let body = OrderBody::new(&sku, 1);
    let customer = body.customer_id.clone();
    let b = stack.create_order(&body).await;
    stack.wait_status(&b, "SHIPPING_CREATED").await;
    let own = env::token_for(&customer, &[Role::Customer]).expect("token");
    let r = post_as(&stack, &own, Service::Order, &format!("/orders/{b}/cancel")).await;
    assert_eq!(r.status, 202, "cancel: {}", r.describe());
    stack.start_service(Service::Notification).await;
    stack.wait_status(&b, "CANCELLED").await;

    // Order A: its timeline and two actions, each by the operator, each
    // naming the event it produced.
    let (trail, timeline) = complete_trail(&stack, &a, 2).await;
    assert_oldest_first(&trail);
    for (name, produced) in [
        ("shipment.dispatched", "ShippingDispatched"),
        ("shipment.delivered", "ShippingDelivered"),
    ] {
        let e = action(&trail, name);
        let act = &e["action"];
        assert_eq!(act["actor"], "ops-audit", "{e:#}");
        assert_eq!(act["actorRoles"], serde_json::json!(["operator"]), "{e:#}");
        assert_eq!(act["orderId"], a.as_str(), "{e:#}");
        assert!(
            act["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("shipment:")),
            "{e:#}"
        );
        assert_eq!(
            act["eventIds"],
            serde_json::json!([event_id(&timeline, produced)]),
            "{e:#}"
        );
        assert_eq!(e["source"], "shipping-service", "{e:#}");
        assert_eq!(e["correlationId"], a.as_str(), "{e:#}");
    }

    // Order B: its timeline and the customer's cancellation.
    let (trail, timeline) = complete_trail(&stack, &b, 1).await;
    assert_oldest_first(&trail);
    let e = action(&trail, "order.cancellation_requested");
    assert_eq!(e["action"]["actor"], customer.as_str(), "{e:#}");
    assert_eq!(
        e["action"]["actorRoles"],
        serde_json::json!(["customer"]),
        "{e:#}"
    );
    let produced: BTreeSet<String> = e["action"]["eventIds"]
        .as_array()
        .expect("eventIds")
        .iter()
        .map(|id| id.as_str().expect("an id").to_owned())
        .collect();
    assert!(
        produced.contains(&event_id(&timeline, "OrderCancellationRequested")),
        "{e:#}"
    );
    assert!(produced.is_subset(&timeline_ids(&timeline)), "{e:#}");

    // By actor: the operator's two actions, nobody else's; the harness's
    // stock change with what it set.
    let by_ops = audit(&stack, &["--actor", "ops-audit"])
        .await
        .expect("the operator's actions");
    let names: Vec<&str> = by_ops
        .iter()
        .map(|e| e["action"]["action"].as_str().expect("action"))
        .collect();
    assert_eq!(names, ["shipment.dispatched", "shipment.delivered"]);
    let by_harness = audit(&stack, &["--actor", "e2e-harness"])
        .await
        .expect("the harness's actions");
    let stock = by_harness
        .iter()
        .find(|e| e["action"]["subject"] == format!("sku:{sku}").as_str())
        .unwrap_or_else(|| panic!("the stock change of {sku} in {by_harness:#?}"));
    assert_eq!(stock["action"]["action"], "stock.set", "{stock:#}");
    assert_eq!(stock["action"]["detail"]["available"], "10", "{stock:#}");
    assert_eq!(stock["source"], "inventory-service", "{stock:#}");
    // The harness registered the customer's card for them.
    let card = by_harness
        .iter()
        .find(|e| {
            e["action"]["action"] == "payment_method.registered"
                && e["action"]["detail"]["customerId"] == customer.as_str()
        })
        .unwrap_or_else(|| panic!("{customer}'s card in {by_harness:#?}"));
    assert_eq!(card["source"], "payment-service", "{card:#}");
    assert!(
        card["action"]["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("payment-method:pm_")),
        "{card:#}"
    );

    // Somebody who did nothing has no trail.
    assert!(audit(&stack, &["--actor", "nobody"]).await.is_none());
}

/// The business events of saga `order` recorded on `audit-events`: the id
/// of each, once per time it is recorded (the records hold many orders'
/// events, so every record is read).
async fn copied_ids(stack: &Stack, order: &str) -> Result<Vec<String>, String> {
    use orderflow_events::events::Event;
    let cfg =
        orderflow_events::kafka::KafkaConfig::new(stack.kafka_bootstrap_servers(), "e2e-audit");
    let topics = vec![format!("{}audit-events", stack.prefix)];
    let records = tokio::task::spawn_blocking(move || {
        orderflow_events::reader::read_to_end(
            &cfg,
            &topics,
            "audit-events",
            std::time::Duration::from_secs(30),
        )
    })
    .await
    .expect("the reader task")?;
    let registry = orderflow_events::registry::RegistryClient::new(stack.registry_url())
        .map_err(|e| e.to_string())?;
    let codec =
        orderflow_events::codec::AvroCodec::new(registry, false).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for r in &records {
        let envelope = codec.decode(&r.payload).await.map_err(|e| e.to_string())?;
        if let Event::AuditRecorded(a) = envelope.event {
            if a.action == "events.recorded" {
                assert_eq!(
                    a.event_ids,
                    a.events
                        .iter()
                        .map(|e| e.event_id.clone())
                        .collect::<Vec<_>>(),
                    "a record names the events it holds"
                );
                out.extend(
                    a.events
                        .into_iter()
                        .filter(|e| e.correlation_id == order)
                        .map(|e| e.event_id),
                );
            }
        }
    }
    Ok(out)
}

/// Every business event of an order is recorded on `audit-events` (kept 7
/// years, longer than any business topic), once, by the order journal, as
/// the order service does by default (`ORDER_AUDIT_EVENT_COPIES`): the
/// order's trail then outlives its events' topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_of_an_order_is_recorded_on_the_audit_trail_once() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("COPY");
    stack.set_stock(&sku, 5).await;
    // Two orders at once: a record holds the events of both.
    let orders = [
        stack.create_order(&OrderBody::new(&sku, 1)).await,
        stack.create_order(&OrderBody::new(&sku, 2)).await,
    ];
    for order in &orders {
        stack.wait_status(order, "SHIPPED").await;
    }
    for order in &orders {
        let timeline = stack.timeline(order).await;
        let want = timeline_ids(&timeline);
        let copied = stack
            .wait_for(
                "every event of the order recorded on the audit trail",
                || async {
                    let copied = copied_ids(&stack, order).await?;
                    let have: BTreeSet<String> = copied.iter().cloned().collect();
                    if want.is_subset(&have) {
                        Ok(copied)
                    } else {
                        Err(format!("recorded {have:?}, want {want:?}"))
                    }
                },
            )
            .await;
        let unique: BTreeSet<String> = copied.iter().cloned().collect();
        assert_eq!(copied.len(), unique.len(), "each recorded once: {copied:?}");
        assert_eq!(unique, want, "the order's timeline, no other: {copied:?}");
        // The trail lists each event once, records and all.
        let trail = audit(&stack, &["--order", order]).await.expect("a trail");
        let listed: Vec<String> = trail
            .iter()
            .map(|e| e["eventId"].as_str().expect("an id").to_owned())
            .collect();
        let listed_once: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(listed.len(), listed_once.len(), "each once: {trail:#?}");
        assert_eq!(listed_once, want, "the timeline's events: {trail:#?}");
    }
}

//! Crash safety: SIGKILL the payment service and later the shipping service
//! while orders are in flight, restart them, and check that every order
//! still ends correctly with no double effect (one payment row, one payment
//! outcome event, one shipment, one confirmation e-mail per order).
//!
//! A killed service is started again at once, as a supervisor would, while
//! the broker still holds its dead consumer group member: the broker must
//! expire that member and give the new one its partitions
//! (`GET /health/consumers`). (tansu 0.6.0, the broker used before, left
//! such a member with an empty assignment for good, so this test used to
//! keep a killed service down for the session timeout first.)

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use orderflow_e2e::client::count_events;
use orderflow_e2e::{OrderBody, Service, Stack, TERMINAL};
use serde_json::Value;

const DECLINED: &str = "tok_chargeDeclined";

/// The bodies of orders `range`, every fourth one with a declined card.
/// Their customers register their cards at once, as customers with a card
/// on file: later waves are placed while the payment service is down.
async fn bodies(stack: &Stack, sku: &str, range: std::ops::Range<usize>) -> Vec<OrderBody> {
    let bodies: Vec<OrderBody> = range
        .map(|i| {
            let body = OrderBody::new(sku, 1 + (i % 2) as i64);
            if i % 4 == 3 {
                body.token(DECLINED)
            } else {
                body
            }
        })
        .collect();
    for b in &bodies {
        stack.payment_method(&b.customer_id, &b.payment_token).await;
    }
    bodies
}

async fn submit(stack: &Stack, bodies: Vec<OrderBody>) -> Vec<(String, OrderBody)> {
    let ids = futures::future::join_all(bodies.iter().map(|b| stack.create_order(b))).await;
    ids.into_iter().zip(bodies).collect()
}

/// Waits until one of `ids` is paid or later (see `paid_or_later`);
/// returns the summary of their statuses at that point.
async fn wait_any_paid(stack: &Stack, what: &str, ids: &[String]) -> BTreeMap<String, usize> {
    stack
        .wait_for(what, || async {
            let s = statuses(stack, ids).await;
            if s.iter().any(paid_or_later) {
                Ok(summary(&s))
            } else {
                Err(format!("{:?}", summary(&s)))
            }
        })
        .await
}

async fn statuses(stack: &Stack, ids: &[String]) -> Vec<Value> {
    futures::stream::iter(ids)
        .map(|id| async move {
            stack
                .get(Service::Order, &format!("/orders/{id}"))
                .await
                .json
        })
        .buffered(16)
        .collect()
        .await
}

fn summary(orders: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in orders {
        *m.entry(o["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    m
}

/// How long a restarted service's consumer may take to hold partitions
/// again: the broker first expires the killed member (6 s session timeout
/// in the e2e stacks), then rebalances.
const REASSIGN_TIMEOUT: Duration = Duration::from_secs(60);

fn paid_or_later(o: &Value) -> bool {
    ["PAID", "SHIPPING_CREATED", "SHIPPED", "DELIVERED"]
        .contains(&o["status"].as_str().unwrap_or(""))
        || o["reasonCode"] == "PAYMENT_DECLINED"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_services_recover_without_double_effects() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("CRASH");
    stack.set_stock(&sku, 1000).await;

    let (a, b, c) = (
        bodies(&stack, &sku, 0..20).await,
        bodies(&stack, &sku, 20..30).await,
        bodies(&stack, &sku, 30..40).await,
    );
    // Wave A; SIGKILL payment as soon as the first order is paid.
    let mut orders = submit(&stack, a).await;
    let wave_a: Vec<String> = orders.iter().map(|(id, _)| id.clone()).collect();
    let at_kill = wait_any_paid(&stack, "an order of wave A to be paid", &wave_a).await;
    stack.kill(Service::Payment).await;
    eprintln!("payment killed; wave A was {at_kill:?}");

    // Wave B arrives while payment is down.
    let wave_b = submit(&stack, b).await;
    let wave_b_ids: Vec<String> = wave_b.iter().map(|(id, _)| id.clone()).collect();
    orders.extend(wave_b);
    stack.start_service(Service::Payment).await;
    stack
        .wait_assigned(Service::Payment, REASSIGN_TIMEOUT)
        .await;

    // SIGKILL shipping once payment has resumed work on wave B.
    let at_kill = wait_any_paid(
        &stack,
        "an order of wave B to be paid or declined",
        &wave_b_ids,
    )
    .await;
    stack.kill(Service::Shipping).await;
    eprintln!("shipping killed; wave B was {at_kill:?}");
    let wave_c = submit(&stack, c).await;
    orders.extend(wave_c);
    stack.start_service(Service::Shipping).await;
    stack
        .wait_assigned(Service::Shipping, REASSIGN_TIMEOUT)
        .await;

    // Everything ends.
    let ids: Vec<String> = orders.iter().map(|(id, _)| id.clone()).collect();
    let finals = stack
        .wait_for_within(
            "all 40 orders to be terminal",
            Duration::from_secs(300).max(stack.timeout),
            || async {
                let s = statuses(&stack, &ids).await;
                if s.iter()
                    .all(|o| TERMINAL.iter().any(|t| o["status"] == t.as_str()))
                {
                    Ok(s)
                } else {
                    Err(format!("{:?}", summary(&s)))
                }
            },
        )
        .await;
    eprintln!("final statuses: {:?}", summary(&finals));

    // Cancellation e-mails of the declined orders arrive asynchronously:
    // wait for them so the duplicate check below sees every message.
    let declined_ids: Vec<&String> = orders
        .iter()
        .filter(|(_, b)| b.payment_token == DECLINED)
        .map(|(id, _)| id)
        .collect();
    let mails = stack
        .wait_for_mails("a cancellation e-mail for every declined order", |mails| {
            declined_ids
                .iter()
                .all(|id| mails.iter().any(|m| m.is_cancellation() && m.mentions(id)))
        })
        .await;

    let mut failures = Vec::new();
    for ((id, body), order) in orders.iter().zip(&finals) {
        let declined = body.payment_token == DECLINED;
        let expected = if declined { "CANCELLED" } else { "SHIPPED" };
        if order["status"] != expected {
            failures.push(format!(
                "{id}: status {} (expected {expected}): {order}",
                order["status"]
            ));
        }
        if declined && order["reasonCode"] != "PAYMENT_DECLINED" {
            failures.push(format!("{id}: reasonCode {}", order["reasonCode"]));
        }
        let payments = stack
            .count(
                Service::Payment,
                "SELECT count(*) FROM payments WHERE order_id::text = $1",
                id,
            )
            .await;
        if payments > 1 {
            failures.push(format!("{id}: {payments} payment rows"));
        }
        let shipments = stack
            .count(
                Service::Shipping,
                "SELECT count(*) FROM shipments WHERE order_id::text = $1",
                id,
            )
            .await;
        if shipments > 1 {
            failures.push(format!("{id}: {shipments} shipment rows"));
        }
        let events = stack.timeline(id).await;
        let outcomes =
            count_events(&events, "PaymentProcessed") + count_events(&events, "PaymentFailed");
        if outcomes != 1 {
            failures.push(format!(
                "{id}: {outcomes} PaymentProcessed/PaymentFailed events: {:?}",
                events.iter().map(|e| &e.event_type).collect::<Vec<_>>()
            ));
        }
        if order["status"] == "SHIPPED" {
            let confirmations = mails.iter().filter(|m| m.confirms(id)).count();
            if confirmations != 1 {
                failures.push(format!("{id}: {confirmations} confirmation e-mails"));
            }
        }
    }
    let mut by_message_id: HashMap<&str, usize> = HashMap::new();
    for m in &mails {
        *by_message_id.entry(m.message_id.as_str()).or_default() += 1;
        if m.message_id.is_empty() {
            failures.push(format!("e-mail without Message-ID: {}", m.describe()));
        }
    }
    for (mid, n) in by_message_id {
        if n > 1 {
            failures.push(format!("Message-ID {mid} received {n} times"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        stack.diagnostics()
    );
}

//! Restarts of the durable stack, the way a user runs `scripts/up` day after
//! day: the stack has a broker of its own on its durable `sqlite://` engine,
//! completes an order, is stopped the way `scripts/up` stops it (every
//! service SIGTERMed, then the broker), and is started again on the same
//! data three times, once with the broker SIGKILLed instead of stopped.
//! After each start every consumer must hold partitions again, a SKU
//! stocked now must reach the order service, and a new order must ship;
//! no record and no committed offset may be lost, and no effect of an
//! earlier order may happen twice.

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_e2e::client::count_events;
use orderflow_e2e::{OrderBody, Service, Stack, StackOptions, Stop};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long a started service's consumer may take to hold partitions: the
/// broker's initial rebalance delay (3 s) and the joins, with a wide margin.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(60);
/// One metadata, watermark or offset request to the broker.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(15);

/// `(topic, partition)`.
type Partition = (String, i32);

/// What the broker holds for the stack.
#[derive(Debug)]
struct BrokerState {
    /// High watermark of every partition of the stack's topics.
    high: BTreeMap<Partition, i64>,
    /// Committed offset of every group on the partitions it consumes.
    committed: BTreeMap<(String, Partition), i64>,
}

/// Each service's consumer group and the topics it consumes, from
/// `GET /health/consumers`.
async fn groups(stack: &Stack) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for svc in Service::ALL {
        let r = stack.get(svc, "/health/consumers").await.expect(200);
        let group = r.json["group"].as_str().expect("group").to_owned();
        let topics: Vec<String> = r.json["consumers"][0]["topics"]
            .as_array()
            .unwrap_or_else(|| panic!("{svc}: no topics in {}", r.text))
            .iter()
            .map(|t| t.as_str().expect("topic name").to_owned())
            .collect();
        assert!(!topics.is_empty(), "{svc} consumes nothing: {}", r.text);
        out.push((group, topics));
    }
    out
}

async fn broker_state(stack: &Stack, groups: &[(String, Vec<String>)]) -> BrokerState {
    let bootstrap = stack.kafka_bootstrap_servers().to_owned();
    let prefix = stack.prefix.clone();
    let groups = groups.to_vec();
    tokio::task::spawn_blocking(move || read_broker_state(&bootstrap, &prefix, &groups))
        .await
        .expect("reading the broker state")
}

fn client(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("creating a Kafka client")
}

fn read_broker_state(
    bootstrap: &str,
    prefix: &str,
    groups: &[(String, Vec<String>)],
) -> BrokerState {
    let reader = client(bootstrap, "restart-test-reader");
    let metadata = reader
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .expect("broker metadata");
    let mut high = BTreeMap::new();
    let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix))
    {
        for p in t.partitions() {
            let (_, hi) = reader
                .fetch_watermarks(t.name(), p.id(), KAFKA_TIMEOUT)
                .unwrap_or_else(|e| panic!("watermarks of {}[{}]: {e}", t.name(), p.id()));
            high.insert((t.name().to_owned(), p.id()), hi);
            partitions
                .entry(t.name().to_owned())
                .or_default()
                .push(p.id());
        }
    }
    let mut committed = BTreeMap::new();
    for (group, topics) in groups {
        let mut list = TopicPartitionList::new();
        for t in topics {
            let ps = partitions
                .get(t)
                .unwrap_or_else(|| panic!("topic {t} of group {group} is not on the broker"));
            for p in ps {
                list.add_partition(t, *p);
            }
        }
        let got = client(bootstrap, group)
            .committed_offsets(list, KAFKA_TIMEOUT)
            .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
        for e in got.elements() {
            if let Offset::Offset(o) = e.offset() {
                committed.insert((group.clone(), (e.topic().to_owned(), e.partition())), o);
            }
        }
    }
    BrokerState { high, committed }
}

/// Nothing the broker held before is gone after: every partition's high
/// watermark and every group's committed offsets are where they were or
/// further.
fn assert_nothing_lost(round: usize, before: &BrokerState, after: &BrokerState) {
    let mut lost = Vec::new();
    for (p, hi) in &before.high {
        match after.high.get(p) {
            Some(now) if now >= hi => {}
            now => lost.push(format!("{p:?}: high watermark {hi} before, {now:?} after")),
        }
    }
    for (k, off) in &before.committed {
        match after.committed.get(k) {
            Some(now) if now >= off => {}
            now => lost.push(format!("{k:?}: committed {off} before, {now:?} after")),
        }
    }
    assert!(
        lost.is_empty(),
        "round {round}: the restart lost records or committed offsets:\n{}",
        lost.join("\n")
    );
}

/// Stocks a new SKU (waiting until the order service knows it), orders it
/// and waits until the order has shipped; returns the order id.
async fn complete_order(stack: &Stack, tag: &str) -> String {
    let sku = stack.sku(tag);
    stack.set_stock(&sku, 5).await;
    let id = stack.create_order(&OrderBody::new(&sku, 2)).await;
    stack.wait_status(&id, "SHIPPED").await;
    id
}

/// Every order so far has exactly one payment, one shipment, one payment
/// outcome and one confirmation e-mail.
async fn assert_applied_once(stack: &Stack, round: usize, ids: &[String]) {
    let mails = stack.mails();
    let mut failures = Vec::new();
    for id in ids {
        for (svc, sql) in [
            (
                Service::Payment,
                "SELECT count(*) FROM payments WHERE order_id::text = $1",
            ),
            (
                Service::Shipping,
                "SELECT count(*) FROM shipments WHERE order_id::text = $1",
            ),
        ] {
            let n = stack.count(svc, sql, id).await;
            if n != 1 {
                failures.push(format!("{id}: {n} rows for `{sql}`"));
            }
        }
        let events = stack.timeline(id).await;
        for t in ["PaymentProcessed", "ShippingCreated", "OrderShipped"] {
            let n = count_events(&events, t);
            if n != 1 {
                failures.push(format!("{id}: {n} {t} events"));
            }
        }
        let confirmations = mails.iter().filter(|m| m.confirms(id)).count();
        if confirmations != 1 {
            failures.push(format!("{id}: {confirmations} confirmation e-mails"));
        }
    }
    assert!(
        failures.is_empty(),
        "round {round}: effects applied more or less than once:\n{}\n{}",
        failures.join("\n"),
        stack.diagnostics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_durable_stack_keeps_its_data_and_works_after_every_restart() {
    let stack = Stack::start(StackOptions {
        own_broker: true,
        ..StackOptions::default()
    })
    .await;
    for svc in Service::ALL {
        stack.wait_assigned(svc, ASSIGN_TIMEOUT).await;
    }
    let groups = groups(&stack).await;
    let mut orders = vec![complete_order(&stack, "RESTART-0").await];
    assert_applied_once(&stack, 0, &orders).await;

    for (round, broker_stop) in [(1, Stop::Term), (2, Stop::Kill), (3, Stop::Term)] {
        // Stopped as scripts/up stops the stack: the services first (each
        // commits its offsets and leaves its group), then the broker.
        for svc in Service::ALL.iter().rev() {
            let status = stack.terminate(*svc).await;
            assert!(
                status.success(),
                "round {round}: {svc} exited with {status}"
            );
        }
        let before = broker_state(&stack, &groups).await;
        assert!(
            before.high.values().sum::<i64>() > 0,
            "round {round}: no records on the broker: {before:?}"
        );
        for (group, _) in &groups {
            assert!(
                before.committed.keys().any(|(g, _)| g == group),
                "round {round}: group {group} committed nothing: {:?}",
                before.committed
            );
        }
        stack.stop_broker(broker_stop).await;

        stack.start_broker().await;
        for svc in Service::ALL {
            stack.start_service(svc).await;
        }
        for svc in Service::ALL {
            stack.wait_assigned(svc, ASSIGN_TIMEOUT).await;
        }
        let after = broker_state(&stack, &groups).await;
        assert_nothing_lost(round, &before, &after);

        orders.push(complete_order(&stack, &format!("RESTART-{round}")).await);
        assert_applied_once(&stack, round, &orders).await;
    }
}

//! The invariants, checked after the campaign from the five databases, the
//! topics and the mailbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::faults::Poisoned;
use crate::{Service, Stack};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// One invariant and the orders (or SKUs, records) that break it.
#[derive(Debug)]
pub struct Invariant {
    /// What must hold.
    pub name: &'static str,
    /// Examples of what broke it (all of them are counted).
    pub violations: Vec<String>,
}

/// The final state the checks read.
#[derive(Debug, Default)]
pub struct State {
    /// Order id → (status, reason code, stalled).
    pub orders: HashMap<String, (String, Option<String>, bool)>,
    /// Order id → payment status.
    pub payments: HashMap<String, String>,
    /// Order id → (shipment status, lines).
    pub shipments: HashMap<String, (String, Vec<(String, i64)>)>,
    /// SKU → (available, reserved, shipped).
    pub stock: BTreeMap<String, (i64, i64, i64)>,
    /// (order id, event type) → distinct event ids seen on the topics.
    pub events: HashMap<(String, String), BTreeSet<String>>,
    /// Dead letters: (original topic, partition, offset, group).
    pub dead_letters: Vec<(String, i32, i64, String)>,
    /// (order id, e-mail kind) → Message-IDs received (with repeats).
    pub mails: BTreeMap<(String, String), Vec<String>>,
}

/// Reads the final state.
pub async fn read_state(stack: &Stack) -> anyhow::Result<State> {
    let mut s = State::default();
    let rows: Vec<(String, String, Option<String>, bool)> =
        sqlx::query_as("SELECT id::text, status, reason_code, stalled_at IS NOT NULL FROM orders")
            .fetch_all(&stack.db(Service::Order).await)
            .await
            .context("reading orders")?;
    for (id, status, code, stalled) in rows {
        s.orders.insert(id, (status, code, stalled));
    }
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT order_id::text, status FROM payments")
        .fetch_all(&stack.db(Service::Payment).await)
        .await
        .context("reading payments")?;
    s.payments.extend(rows);
    let rows: Vec<(String, String, Option<serde_json::Value>)> =
        sqlx::query_as("SELECT order_id, status, items FROM shipments")
            .fetch_all(&stack.db(Service::Shipping).await)
            .await
            .context("reading shipments")?;
    for (id, status, items) in rows {
        let lines = items
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|l| {
                (
                    l["sku"].as_str().unwrap_or_default().to_owned(),
                    l["quantity"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        s.shipments.insert(id, (status, lines));
    }
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT sku, available::bigint, reserved::bigint, shipped::bigint FROM stock",
    )
    .fetch_all(&stack.db(Service::Inventory).await)
    .await
    .context("reading stock")?;
    for (sku, a, r, sh) in rows {
        s.stock.insert(sku, (a, r, sh));
    }
    for m in stack.mails() {
        // `<kind.orderId@orderflow>`
        let id = m.message_id.trim_matches(|c| c == '<' || c == '>');
        if let Some((kind, rest)) = id.split_once('.') {
            let order = rest.split('@').next().unwrap_or_default();
            s.mails
                .entry((order.to_owned(), kind.to_owned()))
                .or_default()
                .push(m.message_id.clone());
        }
    }
    let bootstrap = stack.kafka_bootstrap_servers().to_owned();
    let prefix = stack.prefix.clone();
    let (events, dead) =
        tokio::task::spawn_blocking(move || read_topics(&bootstrap, &prefix)).await??;
    s.events = events;
    s.dead_letters = dead;
    Ok(s)
}

type Events = HashMap<(String, String), BTreeSet<String>>;
type DeadLetters = Vec<(String, i32, i64, String)>;

/// Every record of the stack's topics, to their ends: saga events by order
/// and type (from the `eventType`/`eventId` headers), and dead letters.
fn read_topics(bootstrap: &str, prefix: &str) -> anyhow::Result<(Events, DeadLetters)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{prefix}chaos-checker"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating a Kafka consumer")?;
    let metadata = consumer.fetch_metadata(None, KAFKA_TIMEOUT)?;
    let mut list = TopicPartitionList::new();
    let mut remaining: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix))
    {
        for p in t.partitions() {
            let (lo, hi) = consumer.fetch_watermarks(t.name(), p.id(), KAFKA_TIMEOUT)?;
            if hi > lo {
                list.add_partition_offset(t.name(), p.id(), Offset::Beginning)?;
                remaining.insert((t.name().to_owned(), p.id()), hi);
            }
        }
    }
    consumer.assign(&list)?;
    let mut events: Events = HashMap::new();
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !remaining.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "reading the topics: still waiting for {remaining:?}"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let key = (msg.topic().to_owned(), msg.partition());
        if let Some(hi) = remaining.get(&key) {
            if msg.offset() + 1 >= *hi {
                remaining.remove(&key);
            }
        }
        let mut headers = BTreeMap::new();
        if let Some(hs) = msg.headers() {
            for h in hs.iter() {
                let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(h.key.to_owned(), v.unwrap_or_default());
            }
        }
        if msg.topic().ends_with(".dlq") {
            let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
            dead.push((
                get("dlq.original.topic"),
                get("dlq.original.partition").parse().unwrap_or(-1),
                get("dlq.original.offset").parse().unwrap_or(-1),
                get("dlq.consumer.group"),
            ));
        } else if let (Some(t), Some(id)) = (headers.get("eventType"), headers.get("eventId")) {
            let order = msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            events
                .entry((order, t.clone()))
                .or_default()
                .insert(id.clone());
        }
    }
    Ok((events, dead))
}

/// Effects that must happen at most once per order.
/// (Not `NotificationSent`: an order may get a confirmation and then a
/// cancellation e-mail; e-mails are checked per kind.)
const ONCE: [&str; 8] = [
    "InventoryReserved",
    "InventoryReleased",
    "PaymentProcessed",
    "PaymentRefunded",
    "ShippingCreated",
    "ShippingDispatched",
    "OrderCancelled",
    "OrderShipped",
];

/// Checks every invariant. `accepted` are the orders the API accepted,
/// `initial` the stock each SKU started with, `poison` the records
/// published as poison and `groups` which consumer groups read each topic.
pub fn check(
    s: &State,
    accepted: &BTreeMap<String, Vec<(String, i64)>>,
    initial: &BTreeMap<String, i64>,
    poison: &[Poisoned],
    groups: &BTreeMap<String, Vec<String>>,
) -> Vec<Invariant> {
    let mut lost = Vec::new();
    let mut unfinished = Vec::new();
    let mut mixed = Vec::new();
    let mut money = Vec::new();
    for id in accepted.keys() {
        let Some((status, _, stalled)) = s.orders.get(id) else {
            lost.push(id.clone());
            continue;
        };
        let terminal = matches!(status.as_str(), "SHIPPED" | "DELIVERED" | "CANCELLED");
        if !terminal && !stalled {
            unfinished.push(format!("{id} {status}"));
        }
        let payment = s.payments.get(id).map(String::as_str).unwrap_or("none");
        let shipment = s.shipments.get(id).map(|x| x.0.as_str()).unwrap_or("none");
        let left = matches!(shipment, "DISPATCHED" | "DELIVERED");
        if (left && (payment == "REFUNDED" || status == "CANCELLED"))
            || (status == "CANCELLED" && shipment == "CREATED")
        {
            mixed.push(format!(
                "{id}: order {status}, payment {payment}, shipment {shipment}"
            ));
        }
        match status.as_str() {
            "CANCELLED" if payment == "PROCESSED" => {
                money.push(format!("{id}: cancelled but charged"))
            }
            "SHIPPED" | "DELIVERED" if payment != "PROCESSED" => {
                money.push(format!("{id}: {status} but payment {payment}"))
            }
            _ => {}
        }
    }
    let twice: Vec<String> = s
        .events
        .iter()
        .filter(|((_, t), ids)| ONCE.contains(&t.as_str()) && ids.len() > 1)
        .map(|((o, t), ids)| format!("{o}: {} distinct {t}", ids.len()))
        .collect();
    let mails_twice: Vec<String> = s
        .mails
        .iter()
        .filter(|(_, ids)| ids.iter().collect::<BTreeSet<_>>().len() > 1)
        .map(|((o, k), ids)| format!("{o}: {} {k} e-mails", ids.len()))
        .collect();
    // Stock: every unit is somewhere; the units reserved are those of the
    // shipments waiting in the warehouse (a cancelled or finished saga
    // holds none), the units shipped those of the dispatched ones.
    let mut dispatched: BTreeMap<&str, i64> = BTreeMap::new();
    let mut waiting: BTreeMap<&str, i64> = BTreeMap::new();
    for (status, lines) in s.shipments.values() {
        let into = match status.as_str() {
            "DISPATCHED" | "DELIVERED" => &mut dispatched,
            "CREATED" => &mut waiting,
            _ => continue,
        };
        for (sku, q) in lines {
            *into.entry(sku.as_str()).or_default() += q;
        }
    }
    let mut stock = Vec::new();
    for (sku, start) in initial {
        let (a, r, sh) = s.stock.get(sku).copied().unwrap_or_default();
        let gone = dispatched.get(sku.as_str()).copied().unwrap_or_default();
        let held = waiting.get(sku.as_str()).copied().unwrap_or_default();
        if a + r + sh != *start || r != held || sh != gone {
            stock.push(format!(
                "{sku}: started {start}, now available {a} reserved {r} shipped {sh}; \
                 shipments waiting {held}, dispatched {gone}"
            ));
        }
    }
    // Dead letters: every one is a poison record we published, and every
    // poison record was dead-lettered by every group reading its topic.
    let poisoned: BTreeSet<(&str, i32, i64)> = poison
        .iter()
        .map(|p| (p.topic.as_str(), p.partition, p.offset))
        .collect();
    let mut dlq = Vec::new();
    for (topic, partition, offset, group) in &s.dead_letters {
        if !poisoned.contains(&(topic.as_str(), *partition, *offset)) {
            dlq.push(format!(
                "{group} dead-lettered {topic}[{partition}]@{offset}, not a poison record"
            ));
        }
    }
    for p in poison {
        for group in groups.get(&p.topic).into_iter().flatten() {
            let found = s.dead_letters.iter().any(|(t, pa, o, g)| {
                t == &p.topic && *pa == p.partition && *o == p.offset && g == group
            });
            if !found {
                dlq.push(format!(
                    "{group} never dead-lettered poison {}[{}]@{}",
                    p.topic, p.partition, p.offset
                ));
            }
        }
    }
    vec![
        Invariant {
            name: "no accepted order lost",
            violations: lost,
        },
        Invariant {
            name: "every saga finished (or stalled)",
            violations: unfinished,
        },
        Invariant {
            name: "never both shipped and cancelled/refunded",
            violations: mixed,
        },
        Invariant {
            name: "charged iff shipped",
            violations: money,
        },
        Invariant {
            name: "each effect at most once per order",
            violations: twice,
        },
        Invariant {
            name: "at most one e-mail per kind per order",
            violations: mails_twice,
        },
        Invariant {
            name: "stock conserved per SKU",
            violations: stock,
        },
        Invariant {
            name: "every dead letter accounted for",
            violations: dlq,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(invariants: &[Invariant], name: &str) -> usize {
        invariants
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no invariant {name}"))
            .violations
            .len()
    }

    type Accepted = BTreeMap<String, Vec<(String, i64)>>;

    /// One order shipped cleanly, one cancelled cleanly, of SKU `S` (10).
    fn clean() -> (State, Accepted, BTreeMap<String, i64>) {
        let mut s = State::default();
        let line = vec![("S".to_owned(), 2)];
        s.orders
            .insert("o1".into(), ("DELIVERED".into(), None, false));
        s.payments.insert("o1".into(), "PROCESSED".into());
        s.shipments
            .insert("o1".into(), ("DELIVERED".into(), line.clone()));
        s.orders.insert(
            "o2".into(),
            ("CANCELLED".into(), Some("CUSTOMER_REQUEST".into()), false),
        );
        s.payments.insert("o2".into(), "REFUNDED".into());
        s.shipments
            .insert("o2".into(), ("CANCELLED".into(), line.clone()));
        s.stock.insert("S".into(), (8, 0, 2));
        for (o, t) in [("o1", "PaymentProcessed"), ("o2", "PaymentRefunded")] {
            s.events
                .insert((o.into(), t.into()), BTreeSet::from(["e1".to_owned()]));
        }
        let accepted = BTreeMap::from([("o1".to_owned(), line.clone()), ("o2".to_owned(), line)]);
        (s, accepted, BTreeMap::from([("S".to_owned(), 10)]))
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        let (s, accepted, initial) = clean();
        let all = check(&s, &accepted, &initial, &[], &BTreeMap::new());
        assert!(all.iter().all(|i| i.violations.is_empty()), "{all:?}");
    }

    #[test]
    fn every_broken_promise_is_counted() {
        let (mut s, mut accepted, initial) = clean();
        // Lost, and unfinished.
        accepted.insert("lost".into(), vec![]);
        accepted.insert("o3".into(), vec![]);
        s.orders.insert("o3".into(), ("PAID".into(), None, false));
        // Cancelled and refunded, yet the parcel left.
        s.shipments.get_mut("o2").expect("o2").0 = "DISPATCHED".into();
        // Charged twice.
        s.events
            .get_mut(&("o1".into(), "PaymentProcessed".into()))
            .expect("o1")
            .insert("e2".into());
        // Two distinct confirmation e-mails.
        s.mails.insert(
            ("o1".into(), "order-confirmation".into()),
            vec!["<a>".into(), "<b>".into()],
        );
        // A unit gone missing.
        s.stock.insert("S".into(), (7, 0, 2));
        // A real event dead-lettered, and poison nobody dead-lettered.
        s.dead_letters
            .push(("t".into(), 0, 5, "payment-service".into()));
        let poison = [Poisoned {
            topic: "t".into(),
            partition: 1,
            offset: 9,
        }];
        let groups = BTreeMap::from([("t".to_owned(), vec!["payment-service".to_owned()])]);
        let all = check(&s, &accepted, &initial, &poison, &groups);
        assert_eq!(count(&all, "no accepted order lost"), 1);
        assert_eq!(count(&all, "every saga finished (or stalled)"), 1);
        assert_eq!(count(&all, "never both shipped and cancelled/refunded"), 1);
        assert_eq!(count(&all, "each effect at most once per order"), 1);
        assert_eq!(count(&all, "at most one e-mail per kind per order"), 1);
        assert_eq!(count(&all, "stock conserved per SKU"), 1);
        assert_eq!(count(&all, "every dead letter accounted for"), 2);
    }

    #[test]
    fn a_shipped_order_must_be_charged_and_a_cancelled_one_not() {
        let (mut s, accepted, initial) = clean();
        s.payments.insert("o1".into(), "REFUNDED".into());
        s.payments.insert("o2".into(), "PROCESSED".into());
        let all = check(&s, &accepted, &initial, &[], &BTreeMap::new());
        assert_eq!(count(&all, "charged iff shipped"), 2);
    }
}

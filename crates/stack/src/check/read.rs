//! Reading a settled stack: the five databases, every topic of the stack
//! and the Maildir.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{Notification, Order, State};
use crate::{Service, Stack};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// An order's id, status, reason code, whether it stalled and its
/// payment id.
type OrderRow = (String, String, Option<String>, bool, Option<String>);

/// Reads the final state of `stack`.
pub async fn read_state(stack: &Stack) -> anyhow::Result<State> {
    let mut s = State::default();
    let rows: Vec<OrderRow> = sqlx::query_as(
        "SELECT id::text, status, reason_code, stalled_at IS NOT NULL, payment_id FROM orders",
    )
    .fetch_all(&stack.db(Service::Order).await)
    .await
    .context("reading orders")?;
    for (id, status, reason, stalled, payment_id) in rows {
        let order = Order {
            status,
            reason,
            stalled,
            payment_id: payment_id.filter(|p| !p.is_empty()),
        };
        s.orders.insert(id, order);
    }
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT order_id, status, payment_id::text FROM payments")
            .fetch_all(&stack.db(Service::Payment).await)
            .await
            .context("reading payments")?;
    for (order, status, id) in rows {
        s.payments.insert(order, (status, id));
    }
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
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT order_id, kind, status, message_id FROM notifications")
            .fetch_all(&stack.db(Service::Notification).await)
            .await
            .context("reading notifications")?;
    s.notifications = rows
        .into_iter()
        .map(|(order, kind, status, message_id)| Notification {
            order,
            kind,
            status,
            message_id,
        })
        .collect();
    for svc in Service::ALL {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&stack.db(svc).await)
            .await
            .with_context(|| format!("counting the {svc} outbox"))?;
        s.outbox_pending.insert(svc, n);
    }
    s.mailbox = message_ids(stack.maildir())?;
    let bootstrap = stack.kafka_bootstrap_servers().to_owned();
    let prefix = stack.prefix.clone();
    let (events, dead) =
        tokio::task::spawn_blocking(move || read_topics(&bootstrap, &prefix)).await??;
    s.events = events;
    s.dead_letters = dead;
    Ok(s)
}

/// The Message-ID of every e-mail in `maildir/new`.
fn message_ids(maildir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = maildir.join("new");
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
pub(super) fn message_id(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("message-id")
                .then(|| value.trim().to_owned())
        })
}

type Events = HashMap<(String, String), BTreeSet<String>>;
type DeadLetters = Vec<(String, i32, i64, String)>;

/// Every record of the stack's topics, to their ends: saga events by order
/// and type (from the `eventType`/`eventId` headers), and dead letters.
/// With an empty prefix, every topic of the broker.
fn read_topics(bootstrap: &str, prefix: &str) -> anyhow::Result<(Events, DeadLetters)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{prefix}invariant-checker"))
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
        .filter(|t| t.name().starts_with(prefix) && !t.name().starts_with("__"))
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

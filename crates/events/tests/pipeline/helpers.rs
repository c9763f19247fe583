//! Shared setup for the pipeline tests: a fresh database, unique topics, a
//! recording handler, relay / consumer tasks and raw Kafka readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orderflow_events::codec::AvroCodec;
use orderflow_events::consumer::{ConsumedEvent, ConsumerOptions, EventConsumer, Handler};
use orderflow_events::error::{HandlerError, RunError};
use orderflow_events::events::{Address, OrderCreated, OrderLine, OrderShipped};
use orderflow_events::kafka::{EventProducer, KafkaConfig, OutgoingRecord};
use orderflow_events::registry::RegistryClient;
use orderflow_events::relay::{record_headers, Relay, RelayOptions};
use orderflow_events::testing::{self, TestDatabase};
use orderflow_events::trace_context::TraceContext;
use orderflow_events::{Envelope, EventType, Stream, TopicCatalog};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a test waits for an asynchronous effect.
pub const WAIT: Duration = Duration::from_secs(60);
/// How long no further record may arrive for [`Env::read_exactly`]: the
/// relay has drained the outbox by then, so anything extra was already sent.
pub const QUIET: Duration = Duration::from_secs(2);

/// Metadata key carrying a per-key sequence number.
pub const SEQ: &str = "seq";
/// Metadata key telling the test handler how to misbehave.
pub const BEHAVIOUR: &str = "behaviour";

/// Everything one test needs.
pub struct Env {
    pub db: TestDatabase,
    pub catalog: TopicCatalog,
    pub kafka: KafkaConfig,
    pub codec: Arc<AvroCodec>,
    pub group: String,
    pub registry_url: String,
}

impl Env {
    /// Fresh database, unique topics on the shared test broker.
    pub async fn new(partitions: i32) -> Self {
        Self::with_kafka(testing::kafka_config("events-it"), partitions).await
    }

    /// Fresh database, unique topics on the broker of `kafka`.
    pub async fn with_kafka(kafka: KafkaConfig, partitions: i32) -> Self {
        init_tracing();
        let db = TestDatabase::new().await;
        sqlx::query(
            "CREATE TABLE applied (id BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL, order_key TEXT NOT NULL, \
             seq INT NOT NULL, kafka_offset BIGINT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), \
             txid BIGINT NOT NULL DEFAULT txid_current())",
        )
        .execute(&db.pool)
        .await
        .expect("create applied");
        let catalog = testing::unique_catalog(partitions);
        orderflow_events::admin::ensure_topics(&kafka, &catalog.all_topics(), 1)
            .await
            .expect("create topics");
        let registry_url = testing::registry_url();
        let codec = AvroCodec::new(
            RegistryClient::new(&registry_url).expect("registry client"),
            true,
        )
        .expect("codec");
        Self {
            db,
            catalog,
            kafka,
            codec: Arc::new(codec),
            group: format!("g-{}", Uuid::new_v4().simple()),
            registry_url,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The order stream's topic (where every test event goes).
    pub fn topic(&self) -> String {
        self.catalog.topic(Stream::Order).to_owned()
    }

    pub fn dlq_topic(&self) -> String {
        self.catalog.dlq_topic(&self.topic())
    }

    pub fn partitions(&self) -> i32 {
        self.catalog.spec(Stream::Order).partitions
    }

    /// Starts a relay with `opts`.
    pub fn spawn_relay(&self, opts: RelayOptions) -> Task {
        let relay =
            Relay::new(self.pool().clone(), &self.kafka, self.codec.clone(), opts).expect("relay");
        Task::spawn(move |t| relay.run(t))
    }

    /// Starts a consumer of the order stream in this test's group.
    pub fn spawn_consumer(&self, handler: &TestHandler) -> Task {
        self.spawn_consumer_with(handler, ConsumerOptions::default().max_batch)
    }

    /// Starts a consumer of the order stream in this test's group that
    /// applies up to `max_batch` waiting records per transaction.
    pub fn spawn_consumer_with(&self, handler: &TestHandler, max_batch: usize) -> Task {
        self.spawn_consumer_opts(
            handler,
            ConsumerOptions {
                max_batch,
                ..ConsumerOptions::default()
            },
        )
    }

    /// Starts a consumer of the order stream in this test's group with
    /// `opts` (and a short retry backoff).
    pub fn spawn_consumer_opts(&self, handler: &TestHandler, opts: ConsumerOptions) -> Task {
        self.spawn_consumer_on(handler, self.pool().clone(), opts)
    }

    /// [`Env::spawn_consumer_opts`] on `pool` instead of the test's pool.
    pub fn spawn_consumer_on(
        &self,
        handler: &TestHandler,
        pool: PgPool,
        opts: ConsumerOptions,
    ) -> Task {
        let consumer = EventConsumer::new(
            &self.kafka,
            &self.group,
            pool,
            self.codec.clone(),
            self.catalog.clone(),
        )
        .with_options(ConsumerOptions {
            min_backoff: Duration::from_millis(20),
            ..opts
        })
        .on(EventType::OrderCreated, handler.clone())
        .on(EventType::OrderShipped, handler.clone());
        Task::spawn(move |t| consumer.run(t))
    }

    /// Enqueues `envelope` keyed by `key` in a transaction of its own.
    pub async fn enqueue(&self, key: &str, envelope: &Envelope, trace: Option<&TraceContext>) {
        let mut tx = self.pool().begin().await.expect("begin");
        orderflow_events::outbox::enqueue(&mut tx, &self.catalog, key, envelope, trace)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }

    /// The Kafka record the relay would publish for `envelope`.
    pub async fn record(&self, key: &str, envelope: &Envelope) -> OutgoingRecord {
        let topic = self.topic();
        let payload = self.codec.encode(&topic, envelope).await.expect("encode");
        OutgoingRecord {
            topic,
            key: key.to_owned(),
            payload,
            headers: record_headers(envelope, None),
        }
    }

    /// Sends `events` (key, event) without waiting in between, as the relay
    /// sends a backlog: the records share record batches, so a consumer
    /// started afterwards fetches many at once. Returns once the broker
    /// acknowledged every one.
    pub async fn send_backlog(&self, events: &[(&str, &Envelope)]) {
        let producer = EventProducer::new(&self.kafka).expect("producer");
        let mut deliveries = Vec::with_capacity(events.len());
        for (key, event) in events {
            let record = self.record(key, event).await;
            deliveries.push(producer.send(&record).expect("queue"));
        }
        for delivery in deliveries {
            assert!(
                matches!(delivery.await, Ok(Ok(_))),
                "the broker acknowledged every record"
            );
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.pool())
            .await
            .expect(sql)
    }

    pub async fn applied_count(&self) -> i64 {
        self.count("SELECT count(*) FROM applied").await
    }

    /// Waits until `applied` holds exactly `n` rows.
    pub async fn wait_applied(&self, n: i64) {
        testing::eventually(&format!("{n} applied rows"), WAIT, || async {
            (self.applied_count().await == n).then_some(())
        })
        .await;
    }

    /// Waits until `applied` holds at least `n` rows.
    pub async fn wait_applied_at_least(&self, n: i64) {
        testing::eventually(&format!("at least {n} applied rows"), WAIT, || async {
            (self.applied_count().await >= n).then_some(())
        })
        .await;
    }

    /// `(event_id, order_key, seq)` of every applied row, in apply order.
    pub async fn applied_rows(&self) -> Vec<(Uuid, String, i32)> {
        sqlx::query_as("SELECT event_id, order_key, seq FROM applied ORDER BY id")
            .fetch_all(self.pool())
            .await
            .expect("applied rows")
    }

    /// Sum over the order topic's partitions of the high watermarks.
    pub async fn high_watermark(&self, topic: &str) -> i64 {
        let c = self.plain_consumer(&format!("wm-{}", Uuid::new_v4().simple()));
        let topic = topic.to_owned();
        let partitions = self.partitions_of(&topic);
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    c.fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .expect("watermarks")
                        .1
                })
                .sum()
        })
        .await
        .expect("join")
    }

    /// Sum over the order topic's partitions of the offsets this test's
    /// group committed.
    pub async fn committed(&self) -> i64 {
        let c = self.plain_consumer(&self.group);
        let topic = self.topic();
        let partitions = self.partitions();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let got = c
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            got.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .await
        .expect("join")
    }

    /// Waits until the group committed `n` offsets on the order topic in
    /// total (the consumer got past `n` records).
    pub async fn wait_committed(&self, n: i64) {
        testing::eventually(
            &format!("committed offsets summing to {n}"),
            WAIT,
            || async { (self.committed().await == n).then_some(()) },
        )
        .await;
    }

    fn partitions_of(&self, topic: &str) -> i32 {
        self.catalog
            .all_topics()
            .into_iter()
            .find(|s| s.name == topic)
            .map(|s| s.partitions)
            .expect("topic of the catalog")
    }

    fn plain_consumer(&self, group: &str) -> StreamConsumer {
        self.kafka
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("plain consumer")
    }

    /// Reads `topic` from the beginning until `n` records were read (panics
    /// after [`WAIT`]).
    pub async fn read_topic(&self, topic: &str, n: usize) -> Vec<OwnedMessage> {
        self.read_from_start(topic, n, false).await
    }

    /// Reads `topic` from the beginning: `n` records and then no more for
    /// [`QUIET`]. For counting records where tansu's high watermarks are
    /// wrong (after multi-record batches on several partitions).
    pub async fn read_exactly(&self, topic: &str, n: usize) -> Vec<OwnedMessage> {
        self.read_from_start(topic, n, true).await
    }

    async fn read_from_start(&self, topic: &str, n: usize, then_quiet: bool) -> Vec<OwnedMessage> {
        let c = self.plain_consumer(&format!("reader-{}", Uuid::new_v4().simple()));
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions_of(topic) {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("offset");
        }
        c.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, c.recv()).await {
                Ok(m) => out.push(m.expect("read record").detach()),
                Err(_) => panic!("read only {} of {n} records from {topic}", out.len()),
            }
        }
        if then_quiet {
            if let Ok(extra) = tokio::time::timeout(QUIET, c.recv()).await {
                let extra = extra.expect("read record");
                panic!(
                    "more than {n} records in {topic}: also partition {} offset {}",
                    extra.partition(),
                    extra.offset()
                );
            }
        }
        out
    }
}

/// A relay or consumer running as a task; cancelled when dropped (e.g. when
/// a test fails half-way), so it releases its database connections.
pub struct Task {
    token: CancellationToken,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Task {
    fn spawn<F, Fut>(f: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = Result<(), RunError>> + Send + 'static,
    {
        let token = CancellationToken::new();
        let handle = Some(tokio::spawn(f(token.clone())));
        Self { token, handle }
    }

    /// Cancels the task and returns how it ended.
    pub async fn stop(self) -> Result<(), RunError> {
        self.token.cancel();
        self.join().await
    }

    /// Waits for the task to end on its own.
    pub async fn join(mut self) -> Result<(), RunError> {
        let handle = self.handle.take().expect("joined once");
        tokio::time::timeout(WAIT, handle)
            .await
            .expect("task ends in time")
            .expect("task does not panic")
    }
}

/// A handler that records each applied event as a row of `applied` (no
/// unique constraint: a double effect shows up as two rows) and keeps what
/// it was given. Metadata `behaviour` makes it fail: `permanent` rejects the
/// event, `retry:N` fails N times with a retryable error first,
/// `terminate:N` has the server kill its database session N times first (as
/// a database restart would), `hold` waits until [`TestHandler::release`].
#[derive(Clone, Default)]
pub struct TestHandler {
    pub received: Arc<Mutex<Vec<ConsumedEvent>>>,
    attempts: Arc<Mutex<HashMap<Uuid, u32>>>,
    pub calls: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

/// Holds `hold` events until released.
struct Gate(tokio::sync::watch::Sender<bool>);

impl Default for Gate {
    fn default() -> Self {
        Self(tokio::sync::watch::channel(false).0)
    }
}

impl TestHandler {
    pub fn received(&self) -> Vec<ConsumedEvent> {
        self.received.lock().expect("lock").clone()
    }

    /// Lets every held (`hold`) event through, now and later.
    pub fn release(&self) {
        self.gate.0.send_replace(true);
    }

    pub fn attempts(&self, id: Uuid) -> u32 {
        self.attempts
            .lock()
            .expect("lock")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

#[async_trait]
impl Handler for TestHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let e = &event.envelope;
        let attempt = {
            let mut a = self.attempts.lock().expect("lock");
            let n = a.entry(e.event_id).or_default();
            *n += 1;
            *n
        };
        match e.metadata.get(BEHAVIOUR).map(String::as_str) {
            Some("permanent") => {
                return Err(HandlerError::permanent("test handler rejects this event"))
            }
            Some(b) if b.starts_with("retry:") => {
                let times: u32 = b["retry:".len()..].parse().expect("retry count");
                if attempt <= times {
                    return Err(HandlerError::retryable(format!("attempt {attempt} fails")));
                }
            }
            Some("hold") => {
                let mut open = self.gate.0.subscribe();
                open.wait_for(|open| *open).await.expect("gate kept open");
            }
            Some(b) if b.starts_with("terminate:") => {
                let times: u32 = b["terminate:".len()..].parse().expect("terminate count");
                if attempt <= times {
                    sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
                        .execute(&mut *tx)
                        .await?;
                    unreachable!("the session was terminated");
                }
            }
            _ => {}
        }
        let seq: i32 = e.metadata.get(SEQ).map_or(0, |s| s.parse().expect("seq"));
        sqlx::query(
            "INSERT INTO applied (event_id, order_key, seq, kafka_offset) VALUES ($1, $2, $3, $4)",
        )
        .bind(e.event_id)
        .bind(event.key.clone().unwrap_or_default())
        .bind(seq)
        .bind(event.origin.offset)
        .execute(&mut *tx)
        .await?;
        self.received.lock().expect("lock").push(event.clone());
        Ok(())
    }
}

/// A small `OrderShipped` event of `order_id` with metadata `seq`.
pub fn shipped(order_id: &str, seq: i32) -> Envelope {
    Envelope::new(
        "order-service",
        order_id,
        OrderShipped {
            order_id: order_id.to_owned(),
            tracking_number: format!("T-{seq}"),
        },
    )
    .with_metadata(SEQ, seq.to_string())
}

/// A full `OrderCreated` event.
pub fn created(order_id: &str) -> Envelope {
    Envelope::new(
        "order-service",
        order_id,
        OrderCreated {
            order_id: order_id.to_owned(),
            customer_id: "c-1".into(),
            email: "c1@example.com".into(),
            currency: "EUR".into(),
            items: vec![
                OrderLine {
                    sku: "SKU-1".into(),
                    quantity: 2,
                    unit_price: 1250,
                },
                OrderLine {
                    sku: "SKU-2".into(),
                    quantity: 1,
                    unit_price: 999,
                },
            ],
            total: 3499,
            shipping_address: Address {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                line2: Some("Flat 2".into()),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            payment_token: None,
            payment_method_id: Some("pm_0123456789abcdef0123456789abcdef".into()),
        },
    )
}

/// The value of header `key` as a string.
pub fn header(msg: &OwnedMessage, key: &str) -> Option<String> {
    msg.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

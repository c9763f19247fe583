//! End-to-end benchmark of the event pipeline against real infrastructure:
//! outbox (PostgreSQL) → relay → Kafka (tansu locally) → consumer → inbox.
//!
//! `BENCH_EVENTS` events (default 20 000) are enqueued in transactions of
//! 100 across 1 000 keys into a fresh database while the relay and a
//! consumer run; the handler inserts one row per event. Prints the enqueue
//! rate, the time the relay needed to drain the outbox, the end-to-end
//! throughput (first enqueue to last apply) and the latency from each
//! event's timestamp to its apply.
//!
//! With `BENCH_BACKLOG=1` the relay is stopped while the events are
//! enqueued and started again afterwards: the catch-up after an outage,
//! where a key's rows repeat across the relay's reads. The relay and
//! end-to-end times then count from the relay's restart.
//!
//! Reads the same environment as the tests (`ORDERFLOW_TEST_DATABASE_URL`,
//! `KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`); `BENCH_PARTITIONS`
//! (default 8) sets the topic's partition count. `scripts/bench-events`
//! starts the infrastructure and runs it.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orderflow_events::codec::AvroCodec;
use orderflow_events::consumer::{ConsumedEvent, EventConsumer, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::OrderShipped;
use orderflow_events::registry::RegistryClient;
use orderflow_events::relay::{Relay, RelayOptions};
use orderflow_events::testing::{self, TestDatabase};
use orderflow_events::{Envelope, EventType};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

const TX_SIZE: usize = 100;
const KEYS: usize = 1_000;
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Default)]
struct Sink {
    applied: Arc<AtomicUsize>,
    /// Milliseconds from event timestamp to apply.
    latencies: Arc<Mutex<Vec<i64>>>,
}

#[async_trait]
impl Handler for Sink {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO bench_applied (event_id, order_key) VALUES ($1, $2)")
            .bind(event.envelope.event_id)
            .bind(event.key.as_deref().unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        let latency = (chrono::Utc::now() - event.envelope.timestamp).num_milliseconds();
        self.latencies.lock().expect("lock").push(latency);
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let events = env_usize("BENCH_EVENTS", 20_000);
    let partitions = env_usize("BENCH_PARTITIONS", 8) as i32;
    let backlog = env_usize("BENCH_BACKLOG", 0) != 0;
    let kafka = testing::kafka_config("events-bench");
    println!(
        "pipeline bench: {events} events{}, transactions of {TX_SIZE}, {KEYS} keys, {partitions} partitions, \
         kafka {}, registry {}",
        if backlog { " (a backlog: enqueued with the relay stopped)" } else { "" },
        kafka.bootstrap_servers,
        testing::registry_url()
    );

    let db = TestDatabase::new().await;
    sqlx::query(
        "CREATE TABLE bench_applied (event_id UUID NOT NULL, order_key TEXT NOT NULL, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&db.pool)
    .await
    .expect("create bench_applied");
    let catalog = testing::unique_catalog(partitions);
    orderflow_events::admin::ensure_topics(&kafka, &catalog.all_topics(), 1)
        .await
        .expect("create topics");
    let codec = Arc::new(
        AvroCodec::new(
            RegistryClient::new(&testing::registry_url()).expect("registry client"),
            true,
        )
        .expect("codec"),
    );

    let shutdown = CancellationToken::new();
    let start_relay = |stop: CancellationToken| {
        let relay = Relay::new(
            db.pool.clone(),
            &kafka,
            codec.clone(),
            RelayOptions::default(),
        )
        .expect("relay");
        tokio::spawn(relay.run(stop))
    };
    let relay_stop = shutdown.child_token();
    let mut relay = start_relay(relay_stop.clone());
    let sink = Sink::default();
    let group = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let consumer = EventConsumer::new(
        &kafka,
        &group,
        db.pool.clone(),
        codec.clone(),
        catalog.clone(),
    )
    .on(EventType::OrderShipped, sink.clone());
    let consumer = tokio::spawn(consumer.run(shutdown.clone()));

    let event = |key: &str, i: usize| {
        Envelope::new(
            "order-service",
            key,
            OrderShipped {
                order_id: key.to_owned(),
                tracking_number: format!("TRACK-{i:08}"),
            },
        )
        .with_metadata("seq", i.to_string())
    };

    // Warm-up: the consumer joined its group, the schema is registered,
    // connections are open.
    {
        let mut tx = db.pool.begin().await.expect("begin");
        orderflow_events::outbox::enqueue(&mut tx, &catalog, "warm-up", &event("warm-up", 0), None)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
    wait_until("the warm-up event", || {
        sink.applied.load(Ordering::SeqCst) == 1
    })
    .await;
    sink.latencies.lock().expect("lock").clear();

    if backlog {
        relay_stop.cancel();
        (&mut relay).await.expect("relay task").expect("relay");
    }

    // Measured run: enqueue while the relay and the consumer work (or, for
    // a backlog, with the relay stopped, which then starts again).
    let mut start = Instant::now();
    let pool = db.pool.clone();
    let mut i = 0;
    while i < events {
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..TX_SIZE.min(events - i) {
            let key = format!("order-{:04}", i % KEYS);
            orderflow_events::outbox::enqueue(&mut tx, &catalog, &key, &event(&key, i), None)
                .await
                .expect("enqueue");
            i += 1;
        }
        tx.commit().await.expect("commit");
    }
    let enqueued = start.elapsed();
    if backlog {
        start = Instant::now();
        relay = start_relay(shutdown.child_token());
    }
    // The relay has published everything once the outbox is empty.
    let relay_drained = loop {
        let mut conn = pool.acquire().await.expect("conn");
        let (n, _) = orderflow_events::outbox::backlog(&mut conn)
            .await
            .expect("backlog");
        if n == 0 {
            break start.elapsed();
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for the relay");
        drop(conn);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    wait_until("every event applied", || {
        sink.applied.load(Ordering::SeqCst) == events + 1
    })
    .await;
    let end_to_end = start.elapsed();

    shutdown.cancel();
    relay.await.expect("relay task").expect("relay");
    consumer.await.expect("consumer task").expect("consumer");
    let applied_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_applied")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(
        applied_rows,
        events as i64 + 1,
        "every event applied exactly once"
    );

    let mut latencies = sink.latencies.lock().expect("lock").clone();
    latencies.sort_unstable();
    println!(
        "enqueue:    {events} events in {:.2?} = {:.0} events/s",
        enqueued,
        rate(events, enqueued)
    );
    let since = if backlog {
        "the relay's restart"
    } else {
        "the first enqueue"
    };
    println!(
        "relay:      outbox drained {:.2?} after {since} = {:.0} events/s outbox→Kafka",
        relay_drained,
        rate(events, relay_drained)
    );
    println!(
        "end-to-end: last event applied {:.2?} after {since} = {:.0} events/s outbox→Kafka→inbox",
        end_to_end,
        rate(events, end_to_end)
    );
    println!(
        "latency (event timestamp → applied): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
}

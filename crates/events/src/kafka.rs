//! Kafka client configuration and the idempotent producer.
//!
//! Settings come from the environment: `KAFKA_BOOTSTRAP_SERVERS` (default
//! `127.0.0.1:9092`) plus any librdkafka property as
//! `KAFKA_PROP_<NAME>` with dots as underscores (e.g.
//! `KAFKA_PROP_SECURITY_PROTOCOL=SASL_SSL`).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

/// Connection settings shared by producers, consumers and the admin client.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `client.id` prefix (the service name).
    pub client_id: String,
    /// How long a produced record may wait for acknowledgement before it
    /// fails (`message.timeout.ms`); the relay then retries it.
    pub message_timeout: Duration,
    /// Extra librdkafka properties.
    pub extra: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Settings for `bootstrap_servers` with defaults.
    pub fn new(bootstrap_servers: &str, client_id: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            client_id: client_id.to_owned(),
            message_timeout: Duration::from_secs(30),
            extra: Vec::new(),
        }
    }

    /// Reads `KAFKA_BOOTSTRAP_SERVERS` and `KAFKA_PROP_*` from the environment.
    pub fn from_env(client_id: &str) -> Self {
        let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
        let mut cfg = Self::new(&bootstrap, client_id);
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix("KAFKA_PROP_") {
                cfg.extra
                    .push((name.to_ascii_lowercase().replace('_', "."), v));
            }
        }
        cfg
    }

    /// The base librdkafka configuration.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            // Keep librdkafka's own log noise down; errors still surface.
            .set("log_level", "3");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// The producer's `linger.ms` unless `KAFKA_PROP_LINGER_MS` sets one.
const DEFAULT_LINGER_MS: &str = "1";

/// A record ready to produce.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    /// Topic.
    pub topic: String,
    /// Partition key (the aggregate id).
    pub key: String,
    /// Confluent-framed Avro bytes (or the original bytes, for dead letters).
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: OwnedHeaders,
}

/// An idempotent producer: `enable.idempotence=true`, `acks=all`, so retries
/// inside librdkafka neither duplicate nor reorder records of a partition.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventProducer")
    }
}

impl EventProducer {
    /// Creates the producer.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut config = cfg.client_config();
        // How long librdkafka holds records for a fuller request. The relay
        // hands over a whole batch at once, so this mostly adds latency to
        // every saga hop; `KAFKA_PROP_LINGER_MS` overrides it.
        if config.get("linger.ms").is_none() && config.get("queue.buffering.max.ms").is_none() {
            config.set("linger.ms", DEFAULT_LINGER_MS);
        }
        // The guarantees: not overridable.
        let inner: FutureProducer = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                cfg.message_timeout.as_millis().to_string(),
            )
            .create()?;
        Ok(Self { inner })
    }

    /// Queues `record`; the returned future resolves once the broker has
    /// acknowledged (or finally rejected) it.
    pub fn send(&self, record: &OutgoingRecord) -> Result<DeliveryFuture, KafkaError> {
        let fr = FutureRecord::to(&record.topic)
            .key(record.key.as_bytes())
            .payload(&record.payload)
            .headers(record.headers.clone());
        self.inner.send_result(fr).map_err(|(e, _)| e)
    }

    /// Sends a prepared record (raw key and value) and waits for its
    /// acknowledgement.
    pub async fn send_record(
        &self,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<(), KafkaError> {
        let fut = self.inner.send_result(record).map_err(|(e, _)| e)?;
        match fut.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        }
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: &OutgoingRecord) -> Result<(i32, i64), KafkaError> {
        let fut = self.send(record)?;
        match fut.await {
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        }
    }

    /// Waits up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.flush(timeout)
    }

    /// Whether librdkafka reports a fatal error (idempotence state lost); the
    /// producer must then be recreated.
    pub fn fatal_error(&self) -> Option<String> {
        self.inner.client().fatal_error().map(|(_, s)| s)
    }
}

/// Checks that the brokers answer, for readiness probes.
pub struct BrokerProbe {
    client: std::sync::Arc<rdkafka::producer::BaseProducer>,
}

impl BrokerProbe {
    /// A probe with its own lightweight client.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaError> {
        let client = cfg
            .client_config()
            .set("client.id", format!("{}-probe", cfg.client_id))
            .create()?;
        Ok(Self {
            client: std::sync::Arc::new(client),
        })
    }

    /// How many records each of `topics` holds (high minus low watermark,
    /// over its partitions); a topic that does not exist counts 0.
    pub async fn record_counts(
        &self,
        topics: Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<(String, i64)>, String> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || {
            let c = client.client();
            let mut out = Vec::with_capacity(topics.len());
            for topic in topics {
                let metadata = c
                    .fetch_metadata(Some(&topic), timeout)
                    .map_err(|e| e.to_string())?;
                let mut n = 0;
                for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
                    for p in t.partitions() {
                        let (lo, hi) = c
                            .fetch_watermarks(&topic, p.id(), timeout)
                            .map_err(|e| e.to_string())?;
                        n += hi - lo;
                    }
                }
                out.push((topic, n));
            }
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Fetches cluster metadata within `timeout`; `Ok(brokers)` when at least
    /// one broker answered.
    pub async fn check(&self, timeout: Duration) -> Result<usize, String> {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rdkafka::client::ClientContext;
    use rdkafka::mocking::MockCluster;
    use rdkafka::statistics::Statistics;
    use tokio::sync::watch;

    use super::*;

    /// Publishes the broker threads' wake-up count of each statistics report.
    #[derive(Clone)]
    struct Wakeups(Arc<watch::Sender<u64>>);

    impl ClientContext for Wakeups {
        fn stats(&self, statistics: Statistics) {
            let total = statistics.brokers.values().filter_map(|b| b.wakeups).sum();
            self.0.send_replace(total);
        }
    }

    /// The wake-up count of the first report made after this call.
    async fn next_report(reports: &mut watch::Receiver<u64>) -> u64 {
        reports.mark_unchanged();
        tokio::time::timeout(Duration::from_secs(10), reports.changed())
            .await
            .expect("a statistics report within 10 s")
            .expect("the producer is alive");
        *reports.borrow()
    }

    /// librdkafka's idempotent producer lets a partition with five records in
    /// flight send nothing more until a response arrives. It used to ask
    /// for a wake-up at the linger deadline of the records queued behind
    /// them even so, a deadline already past, so its broker thread spun
    /// (a `poll` every few microseconds) for as long as the broker took to
    /// answer. `third_party/rdkafka-sys` carries the fix; this runs the
    /// producer the relay uses against librdkafka's mock broker answering
    /// after 200 ms and counts the broker thread's wake-ups.
    #[tokio::test]
    async fn an_idempotent_producer_waiting_for_its_acknowledgements_does_not_spin() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("slow", 1, 1).expect("topic");
        let (reports_tx, mut reports) = watch::channel(0);
        let producer: FutureProducer<Wakeups> = KafkaConfig::new(&cluster.bootstrap_servers(), "t")
            .client_config()
            .set("linger.ms", DEFAULT_LINGER_MS)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("statistics.interval.ms", "100")
            .create_with_context(Wakeups(Arc::new(reports_tx)))
            .expect("producer");
        let record = |i: usize| {
            let key = i.to_string();
            producer
                .send_result(FutureRecord::to("slow").key(&key).payload("x"))
                .map_err(|(e, _)| e)
                .expect("queued")
        };
        // Connected, with a producer id.
        record(0).await.unwrap().expect("first record delivered");

        cluster
            .broker_round_trip_time(1, Duration::from_millis(200))
            .expect("rtt");
        let before = next_report(&mut reports).await;
        // The relay's pace at a few hundred events a second: records keep
        // arriving while earlier ones wait for their answer.
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        let mut deliveries = Vec::new();
        for i in 1..=100 {
            pace.tick().await;
            deliveries.push(record(i));
        }
        for delivery in deliveries {
            delivery.await.unwrap().expect("delivered");
        }
        let woken = next_report(&mut reports).await - before;
        eprintln!("broker thread wake-ups while the records waited: {woken}");

        // Waiting well over a second for answers: a wake-up per response,
        // per record queued and per timer is a few dozen (32-36 measured);
        // a spinning thread wakes hundreds of thousands of times
        // (774,487-983,819 without the fix).
        assert!(
            woken < 2_000,
            "the broker thread woke {woken} times while 100 records waited for 200 ms answers"
        );
    }
}

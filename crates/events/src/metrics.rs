//! Prometheus metrics of the event pipeline, in one process-wide registry.
//! A consumer's metrics carry its `group`: a service may run several (its
//! own and its projections').
//!
//! The relay and the consumer record into [`pipeline`]; services register
//! their own metrics with [`register`]; the service runtime renders
//! everything with [`encode`] at `GET /metrics` (OpenMetrics text, which
//! Prometheus scrapes natively).
//!
//! | metric | labels |
//! |---|---|
//! | `orderflow_events_published_total` | `topic`, `event_type` |
//! | `orderflow_events_consumed_total` | `group`, `topic`, `event_type`, `outcome` = `applied` \| `duplicate` \| `skipped` |
//! | `orderflow_events_failed_total` | `group`, `topic`, `event_type`, `error` = `retryable` \| `permanent` \| `infrastructure` \| `quarantined` |
//! | `orderflow_events_dead_lettered_total` | `group`, `topic`, `reason` |
//! | `orderflow_handler_duration_seconds` (histogram) | `group`, `topic`, `event_type` |
//! | `orderflow_consumer_transaction_records` (histogram) | `group`, `topic` |
//! | `orderflow_relay_delay_seconds` (histogram) | `topic` |
//! | `orderflow_consumer_fetch_delay_seconds` (histogram) | `group`, `topic` |
//! | `orderflow_consumer_delay_seconds` (histogram) | `group`, `topic` |
//! | `orderflow_outbox_backlog`, `orderflow_outbox_oldest_age_seconds` | (set at scrape time, [`observe_outbox`]) |
//! | `orderflow_consumer_lag` | `group`, `topic`, `partition` |
//! | `orderflow_consumer_assigned_partitions` | `group` |
//! | `orderflow_events_redriven_total` | `group`, `topic`: records consumed that `orderctl dlq redrive` sent back |
//! | `orderflow_dlq_records` | `topic`: records on the dead-letter topics of what the service reads (set at scrape time) |

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlx::PgConnection;

pub use prometheus_client;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `topic` and `event_type`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Kafka topic.
    pub topic: String,
    /// Event type name, e.g. `OrderCreated`.
    pub event_type: String,
}

/// `group`, `topic` and `event_type`: a consumer group's handling of one
/// event type.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    /// Consumer group.
    pub group: String,
    /// Kafka topic.
    pub topic: String,
    /// Event type name.
    pub event_type: String,
}

/// `group`, `topic`, `event_type` and `outcome`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    /// Consumer group.
    pub group: String,
    /// Kafka topic.
    pub topic: String,
    /// Event type name.
    pub event_type: String,
    /// `applied`, `duplicate` (already in the inbox) or `skipped` (no
    /// handler for this type).
    pub outcome: &'static str,
}

/// `group`, `topic`, `event_type` and `error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailedLabels {
    /// Consumer group.
    pub group: String,
    /// Kafka topic.
    pub topic: String,
    /// Event type name.
    pub event_type: String,
    /// `retryable`, `permanent` or `infrastructure`.
    pub error: &'static str,
}

/// `group`, `topic` and `reason` of a dead letter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// The consumer group that gave up on the record.
    pub group: String,
    /// The topic the record came from.
    pub topic: String,
    /// The `dlq.reason` header, e.g. `handler-rejected`.
    pub reason: String,
}

/// `group`, `topic` and `partition`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Consumer group.
    pub group: String,
    /// Kafka topic.
    pub topic: String,
    /// Partition number.
    pub partition: String,
}

/// `topic`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Kafka topic.
    pub topic: String,
}

/// `group` and `topic`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    /// Consumer group.
    pub group: String,
    /// Kafka topic.
    pub topic: String,
}

/// `group`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Kafka consumer group.
    pub group: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The pipeline's metrics (see the module documentation).
pub struct PipelineMetrics {
    /// Events the relay published (acknowledged by the broker).
    pub published: Family<EventLabels, Counter>,
    /// Events the consumer finished with, by outcome.
    pub consumed: Family<ConsumedLabels, Counter>,
    /// Failed handler attempts, by error class.
    pub failed: Family<FailedLabels, Counter>,
    /// Records written to a dead-letter topic.
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    /// Time of one handler attempt, including its transaction.
    pub handler_duration: HistogramFamily<HandlerLabels>,
    /// Records applied per committed consumer transaction.
    pub transaction_records: HistogramFamily<GroupTopicLabels>,
    /// From an event's timestamp to the relay handing it to the producer.
    pub relay_delay: HistogramFamily<TopicLabels>,
    /// From a record's timestamp (set when the producer got it) to the
    /// consumer receiving it from the client library: producer, broker and
    /// fetch, before any of the service's own queueing.
    pub consumer_fetch_delay: HistogramFamily<GroupTopicLabels>,
    /// From a record's timestamp (set when the producer got it) to the
    /// consumer starting to apply it.
    pub consumer_delay: HistogramFamily<GroupTopicLabels>,
    /// Unpublished outbox rows.
    pub outbox_backlog: Gauge<i64>,
    /// Age of the oldest unpublished outbox row.
    pub outbox_oldest_age: Gauge<f64, AtomicU64>,
    /// Records not yet processed, per assigned partition.
    pub consumer_lag: Family<PartitionLabels, Gauge<i64>>,
    /// Partitions this process's member of a consumer group holds now.
    pub assigned_partitions: Family<GroupLabels, Gauge<i64>>,
    /// Records consumed that a redrive sent back from a dead-letter topic.
    pub redriven: Family<GroupTopicLabels, Counter>,
    /// Records on a dead-letter topic (set at scrape time).
    pub dlq_records: Family<TopicLabels, Gauge<i64>>,
}

fn handler_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn delay_histogram() -> Histogram {
    // 0.5 ms .. ~10 s, finer than the handler's: a saga hop is tens of ms.
    Histogram::new(exponential_buckets(0.0005, 1.6, 22))
}

fn batch_histogram() -> Histogram {
    // 1 .. 64 records.
    Histogram::new(exponential_buckets(1.0, 2.0, 7))
}

fn global() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// The process-wide registry, for services that register metrics of their
/// own (prefer [`register`]).
pub fn registry() -> MutexGuard<'static, Registry> {
    global().lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers metrics with the process-wide registry.
pub fn register(f: impl FnOnce(&mut Registry)) {
    f(&mut registry());
}

/// The pipeline's metrics, registered on first use.
pub fn pipeline() -> &'static PipelineMetrics {
    static METRICS: OnceLock<PipelineMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = PipelineMetrics {
            published: Family::default(),
            consumed: Family::default(),
            failed: Family::default(),
            dead_lettered: Family::default(),
            handler_duration: Family::new_with_constructor(handler_histogram),
            transaction_records: Family::new_with_constructor(batch_histogram),
            relay_delay: Family::new_with_constructor(delay_histogram),
            consumer_fetch_delay: Family::new_with_constructor(delay_histogram),
            consumer_delay: Family::new_with_constructor(delay_histogram),
            outbox_backlog: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            consumer_lag: Family::default(),
            assigned_partitions: Family::default(),
            redriven: Family::default(),
            dlq_records: Family::default(),
        };
        let mut r = registry();
        r.register(
            "orderflow_events_published",
            "Events the outbox relay published (acknowledged by the broker)",
            m.published.clone(),
        );
        r.register(
            "orderflow_events_consumed",
            "Events the consumer finished with: applied, duplicate (already applied) or skipped (no handler)",
            m.consumed.clone(),
        );
        r.register(
            "orderflow_events_failed",
            "Failed handler attempts by error class",
            m.failed.clone(),
        );
        r.register(
            "orderflow_events_dead_lettered",
            "Records written to a dead-letter topic, by source topic and reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "orderflow_handler_duration_seconds",
            "Duration of one handler attempt (in a batch: the time of the handler call for its run of records, divided by their number; the inbox statement and the commit are not counted)",
            m.handler_duration.clone(),
        );
        r.register(
            "orderflow_consumer_transaction_records",
            "Records applied (or found to be duplicates) per committed consumer transaction: how well batching works",
            m.transaction_records.clone(),
        );
        r.register(
            "orderflow_relay_delay_seconds",
            "Time from an event's timestamp (set when it was written to the outbox) to the relay handing it to the producer",
            m.relay_delay.clone(),
        );
        r.register(
            "orderflow_consumer_fetch_delay_seconds",
            "Time from a record's timestamp (set when the relay's producer got it) to the consumer receiving it from the client library: producer linger and acknowledgement, broker and fetch; the rest of orderflow_consumer_delay_seconds is the service's own queueing",
            m.consumer_fetch_delay.clone(),
        );
        r.register(
            "orderflow_consumer_delay_seconds",
            "Time from a record's timestamp (set when the relay's producer got it) to the consumer starting to apply it: producer linger, broker, fetch and queueing behind earlier records; across hosts it includes their clock difference",
            m.consumer_delay.clone(),
        );
        r.register(
            "orderflow_outbox_backlog",
            "Outbox rows not yet published",
            m.outbox_backlog.clone(),
        );
        r.register(
            "orderflow_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when empty)",
            m.outbox_oldest_age.clone(),
        );
        r.register(
            "orderflow_consumer_lag",
            "Records on the broker not yet processed, per assigned partition",
            m.consumer_lag.clone(),
        );
        r.register(
            "orderflow_consumer_assigned_partitions",
            "Partitions this process's member of a consumer group holds now; 0 while it waits for an assignment (it consumes nothing then)",
            m.assigned_partitions.clone(),
        );
        r.register(
            "orderflow_events_redriven",
            "Records consumed that `orderctl dlq redrive` sent back from a dead-letter topic",
            m.redriven.clone(),
        );
        r.register(
            "orderflow_dlq_records",
            "Records on the dead-letter topic of each topic the service reads (measured at scrape time)",
            m.dlq_records.clone(),
        );
        m
    })
}

impl PipelineMetrics {
    /// Counts one record `group` consumed that a redrive sent back.
    pub fn redriven(&self, group: &str, topic: &str) {
        self.redriven
            .get_or_create(&group_topic(group, topic))
            .inc();
    }

    /// Sets how many records dead-letter topic `topic` holds.
    pub fn dlq_records(&self, topic: &str, records: i64) {
        self.dlq_records
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .set(records);
    }

    /// Counts one published event.
    pub fn published(&self, topic: &str, event_type: &str) {
        self.published
            .get_or_create(&EventLabels {
                topic: topic.to_owned(),
                event_type: event_type.to_owned(),
            })
            .inc();
    }

    /// Counts one event `group` consumed with `outcome`.
    pub fn consumed(&self, group: &str, topic: &str, event_type: &str, outcome: &'static str) {
        self.consumed
            .get_or_create(&ConsumedLabels {
                group: group.to_owned(),
                topic: topic.to_owned(),
                event_type: event_type.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts one failed handler attempt of `group`, of class `error`.
    pub fn failed(&self, group: &str, topic: &str, event_type: &str, error: &'static str) {
        self.failed
            .get_or_create(&FailedLabels {
                group: group.to_owned(),
                topic: topic.to_owned(),
                event_type: event_type.to_owned(),
                error,
            })
            .inc();
    }

    /// Counts one dead letter `group` wrote.
    pub fn dead_lettered(&self, group: &str, topic: &str, reason: &str) {
        self.dead_lettered
            .get_or_create(&DeadLetterLabels {
                group: group.to_owned(),
                topic: topic.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the duration of one handler attempt.
    pub fn handler_duration(&self, group: &str, topic: &str, event_type: &str, d: Duration) {
        self.handler_duration
            .get_or_create(&HandlerLabels {
                group: group.to_owned(),
                topic: topic.to_owned(),
                event_type: event_type.to_owned(),
            })
            .observe(d.as_secs_f64());
    }

    /// Records the time from an event's timestamp to its hand-over to the
    /// producer.
    pub fn relay_delay(&self, topic: &str, d: Duration) {
        self.relay_delay
            .get_or_create(&TopicLabels {
                topic: topic.to_owned(),
            })
            .observe(d.as_secs_f64());
    }

    /// Records the time from a record's timestamp to `group`'s consumer
    /// receiving it.
    pub fn consumer_fetch_delay(&self, group: &str, topic: &str, d: Duration) {
        self.consumer_fetch_delay
            .get_or_create(&group_topic(group, topic))
            .observe(d.as_secs_f64());
    }

    /// Records the time from a record's timestamp to the start of its
    /// handling by `group`.
    pub fn consumer_delay(&self, group: &str, topic: &str, d: Duration) {
        self.consumer_delay
            .get_or_create(&group_topic(group, topic))
            .observe(d.as_secs_f64());
    }

    /// Records a committed transaction of `group` of `records` records.
    pub fn transaction_records(&self, group: &str, topic: &str, records: usize) {
        self.transaction_records
            .get_or_create(&group_topic(group, topic))
            .observe(records as f64);
    }
}

fn group_topic(group: &str, topic: &str) -> GroupTopicLabels {
    GroupTopicLabels {
        group: group.to_owned(),
        topic: topic.to_owned(),
    }
}

/// Sets the outbox gauges from the table (`outbox::backlog`).
pub async fn observe_outbox(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let (count, age) = crate::outbox::backlog(conn).await?;
    let m = pipeline();
    m.outbox_backlog.set(count);
    m.outbox_oldest_age.set(age);
    Ok(())
}

/// Every registered metric in OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn encode() -> String {
    pipeline();
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry()) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_metrics_render_with_their_labels() {
        let m = pipeline();
        m.published("t-metrics-test", "OrderCreated");
        m.consumed("g", "t-metrics-test", "OrderCreated", "applied");
        m.consumed("g.journal", "t-metrics-test", "OrderCreated", "applied");
        m.failed("g", "t-metrics-test", "OrderCreated", "retryable");
        m.dead_lettered("g", "t-metrics-test", "handler-rejected");
        m.handler_duration(
            "g",
            "t-metrics-test",
            "OrderCreated",
            Duration::from_millis(3),
        );
        m.relay_delay("t-metrics-test", Duration::from_millis(2));
        m.consumer_delay("g", "t-metrics-test", Duration::from_millis(20));
        m.consumer_fetch_delay("g", "t-metrics-test", Duration::from_millis(5));
        m.consumer_lag
            .get_or_create(&PartitionLabels {
                group: "g".into(),
                topic: "t-metrics-test".into(),
                partition: "3".into(),
            })
            .set(7);
        let text = encode();
        for needle in [
            r#"orderflow_events_published_total{topic="t-metrics-test",event_type="OrderCreated"} 1"#,
            r#"orderflow_events_consumed_total{group="g",topic="t-metrics-test",event_type="OrderCreated",outcome="applied"} 1"#,
            r#"orderflow_events_consumed_total{group="g.journal",topic="t-metrics-test",event_type="OrderCreated",outcome="applied"} 1"#,
            r#"orderflow_events_failed_total{group="g",topic="t-metrics-test",event_type="OrderCreated",error="retryable"} 1"#,
            r#"orderflow_events_dead_lettered_total{group="g",topic="t-metrics-test",reason="handler-rejected"} 1"#,
            r#"orderflow_handler_duration_seconds_count{group="g",topic="t-metrics-test",event_type="OrderCreated"} 1"#,
            r#"orderflow_relay_delay_seconds_count{topic="t-metrics-test"} 1"#,
            r#"orderflow_consumer_delay_seconds_sum{group="g",topic="t-metrics-test"} 0.02"#,
            r#"orderflow_consumer_fetch_delay_seconds_sum{group="g",topic="t-metrics-test"} 0.005"#,
            "# TYPE orderflow_outbox_backlog gauge",
            r#"orderflow_consumer_lag{group="g",topic="t-metrics-test",partition="3"} 7"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

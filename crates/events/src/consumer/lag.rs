//! The consumer's librdkafka context: lag from statistics, assignment
//! from rebalances.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};

use super::assignment;

/// How often librdkafka reports statistics, from which the consumer lag
/// gauge is updated (`KAFKA_PROP_STATISTICS_INTERVAL_MS` overrides it).
pub const LAG_STATISTICS_INTERVAL: Duration = Duration::from_secs(10);

/// The consumer's librdkafka context: turns statistics into the
/// `orderflow_consumer_lag` gauge (lag is the high watermark minus the
/// offset stored after processing or, before anything was processed, the
/// committed offset, per partition currently assigned), and rebalances into
/// the group's [`assignment`].
pub struct LagContext {
    pub(super) group: String,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let lag = &crate::metrics::pipeline().consumer_lag;
        for (name, topic) in &statistics.topics {
            for p in topic.partitions.values() {
                if p.partition < 0 {
                    continue;
                }
                let labels = crate::metrics::PartitionLabels {
                    group: self.group.clone(),
                    topic: name.clone(),
                    partition: p.partition.to_string(),
                };
                let value = [p.consumer_lag_stored, p.consumer_lag]
                    .into_iter()
                    .find(|v| *v >= 0);
                match (p.desired, value) {
                    (true, Some(v)) => {
                        lag.get_or_create(&labels).set(v);
                    }
                    (false, _) => {
                        lag.remove(&labels);
                    }
                    (true, None) => {}
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(group = %self.group, partitions = list.count(), "partitions assigned");
                assignment::rebalanced(&self.group, list, true);
            }
            Rebalance::Revoke(list) => {
                tracing::info!(group = %self.group, partitions = list.count(), "partitions revoked");
                assignment::rebalanced(&self.group, list, false);
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed");
                assignment::failed(&self.group, e.to_string());
            }
        }
    }
}

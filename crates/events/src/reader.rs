//! Reading topics back from the beginning, for the operator tools
//! (`orderctl dlq`, `orderctl audit`): every record of the chosen topics up
//! to the end they had when the read started, without a consumer group's
//! offsets, so a read commits and changes nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::KafkaConfig;

/// One record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp: Option<DateTime<Utc>>,
    /// The key, as text.
    pub key: Option<String>,
    /// Every header, as text (a repeated name keeps its last value).
    pub headers: BTreeMap<String, String>,
    /// The value, byte for byte.
    pub payload: Vec<u8>,
}

impl LoggedRecord {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Every record of `topics` (topics that do not exist are skipped), from the
/// beginning to the end they had when the read started, in (topic,
/// partition, offset) order. `what` names the read in errors. Blocking.
pub fn read_to_end(
    cfg: &KafkaConfig,
    topics: &[String],
    what: &str,
    timeout: Duration,
) -> Result<Vec<LoggedRecord>, String> {
    let consumer: BaseConsumer = cfg
        .client_config()
        // Never joins: partitions are assigned by hand and nothing is
        // committed, but librdkafka wants a group id.
        .set("group.id", "orderctl-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("creating a Kafka consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| format!("reading the topic list from {}: {e}", cfg.bootstrap_servers))?;
    let mut list = TopicPartitionList::new();
    let mut remaining: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
    {
        for p in t.partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(t.name(), p.id(), timeout)
                .map_err(|e| format!("reading the end of {}[{}]: {e}", t.name(), p.id()))?;
            if hi > lo {
                list.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                    .map_err(|e| e.to_string())?;
                remaining.insert((t.name().to_owned(), p.id()), hi);
            }
        }
    }
    if remaining.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&list).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !remaining.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!("reading {what}: still waiting for {remaining:?}"));
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.map_err(|e| format!("reading {what}: {e}"))?;
        let key = (msg.topic().to_owned(), msg.partition());
        match remaining.get(&key) {
            Some(hi) if msg.offset() + 1 >= *hi => {
                remaining.remove(&key);
            }
            Some(_) => {}
            // Past the end the read started with: newer than the read.
            None => continue,
        }
        let mut headers = BTreeMap::new();
        if let Some(hs) = msg.headers() {
            for header in hs.iter() {
                let v = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(header.key.to_owned(), v.unwrap_or_default());
            }
        }
        out.push(LoggedRecord {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp: msg
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: msg.payload().unwrap_or_default().to_vec(),
        });
    }
    out.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    Ok(out)
}

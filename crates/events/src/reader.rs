//! Reading topics back, for the operator tools (`orderctl dlq`, `orderctl
//! audit`, `orderctl replay`): every record of the chosen topics from the
//! beginning (or a time) up to the end they had when the read started,
//! without a consumer group's offsets, so a read commits and changes
//! nothing.

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

/// Where a read starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record the broker still has.
    Beginning,
    /// The first record whose timestamp is at or after this time.
    Timestamp(DateTime<Utc>),
    /// The last this many offsets of each partition: a read whose cost does
    /// not grow with the topic.
    Last(u32),
}

/// The offsets `start..end` of one partition a read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset.
    pub start: i64,
    /// The partition's end when the read started.
    pub end: i64,
    /// The oldest offset the broker had then (`start`, unless the read
    /// starts later).
    pub oldest: i64,
}

/// A read of chosen topics from a [`Start`] to the end they had when it
/// was opened, without a consumer group, so it commits and changes nothing.
/// Blocking.
pub struct LogReader {
    consumer: BaseConsumer,
    ranges: Vec<PartitionRange>,
}

impl LogReader {
    /// Finds each partition's range of `topics` (topics that do not exist
    /// are skipped) and assigns the non-empty ones.
    pub fn open(
        cfg: &KafkaConfig,
        topics: &[String],
        start: Start,
        timeout: Duration,
    ) -> Result<Self, String> {
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
        let partitions = crate::admin::topic_partitions(&consumer, topics, timeout)
            .map_err(|e| format!("reading the topic list from {}: {e}", cfg.bootstrap_servers))?;
        let mut ranges = Vec::new();
        for (topic, partition) in partitions {
            let (lo, hi) = consumer
                .fetch_watermarks(&topic, partition, timeout)
                .map_err(|e| format!("reading the end of {topic}[{partition}]: {e}"))?;
            ranges.push(PartitionRange {
                topic,
                partition,
                start: lo,
                end: hi,
                oldest: lo,
            });
        }
        if let Start::Last(n) = start {
            for r in &mut ranges {
                r.start = (r.end - i64::from(n)).max(r.start);
            }
        }
        if let Start::Timestamp(at) = start {
            let mut query = TopicPartitionList::new();
            for r in &ranges {
                query
                    .add_partition_offset(
                        &r.topic,
                        r.partition,
                        Offset::Offset(at.timestamp_millis()),
                    )
                    .map_err(|e| e.to_string())?;
            }
            let found = consumer
                .offsets_for_times(query, timeout)
                .map_err(|e| format!("finding the offsets at {at}: {e}"))?;
            for r in &mut ranges {
                let offset = found
                    .find_partition(&r.topic, r.partition)
                    .map(|p| p.offset());
                r.start = match offset {
                    Some(Offset::Offset(o)) => o.clamp(r.start, r.end),
                    // No record at or after the time: nothing to read.
                    _ => r.end,
                };
            }
        }
        let mut list = TopicPartitionList::new();
        for r in ranges.iter().filter(|r| r.end > r.start) {
            list.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.start))
                .map_err(|e| e.to_string())?;
        }
        if list.count() > 0 {
            consumer.assign(&list).map_err(|e| e.to_string())?;
        }
        Ok(Self { consumer, ranges })
    }

    /// Each partition's range, by topic and partition.
    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// How many offsets the partitions held when the read started, from
    /// their oldest (records, unless some were deleted), whatever part of
    /// them the read covers.
    pub fn held(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| u64::try_from(r.end - r.oldest).unwrap_or(0))
            .sum()
    }

    /// How many offsets the ranges span (records, unless some were
    /// deleted).
    pub fn span(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| u64::try_from(r.end - r.start).unwrap_or(0))
            .sum()
    }

    /// Gives every record of the ranges to `each`, in offset order within
    /// each partition; stops at `each`'s first error. `what` names the read
    /// in errors; `timeout` bounds the whole read.
    pub fn for_each(
        self,
        what: &str,
        timeout: Duration,
        mut each: impl FnMut(LoggedRecord) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut remaining: BTreeMap<(String, i32), i64> = self
            .ranges
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| ((r.topic.clone(), r.partition), r.end))
            .collect();
        let deadline = Instant::now() + timeout;
        while !remaining.is_empty() {
            if Instant::now() >= deadline {
                return Err(format!("reading {what}: still waiting for {remaining:?}"));
            }
            let Some(msg) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.map_err(|e| format!("reading {what}: {e}"))?;
            let key = (msg.topic().to_owned(), msg.partition());
            match remaining.get(&key) {
                // Past the end, the records before it deleted: done.
                Some(hi) if msg.offset() >= *hi => {
                    remaining.remove(&key);
                    continue;
                }
                Some(hi) if msg.offset() + 1 >= *hi => {
                    remaining.remove(&key);
                }
                Some(_) => {}
                // Past the end the read started with: newer than the read.
                None => continue,
            }
            each(logged(&msg))?;
        }
        Ok(())
    }
}

fn logged(msg: &rdkafka::message::BorrowedMessage<'_>) -> LoggedRecord {
    let mut headers = BTreeMap::new();
    if let Some(hs) = msg.headers() {
        for header in hs.iter() {
            let v = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned());
            headers.insert(header.key.to_owned(), v.unwrap_or_default());
        }
    }
    LoggedRecord {
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
    let reader = LogReader::open(cfg, topics, Start::Beginning, timeout)?;
    let mut out = Vec::new();
    reader.for_each(what, timeout, |r| {
        out.push(r);
        Ok(())
    })?;
    out.sort_by(|a, b| (&a.topic, a.partition, a.offset).cmp(&(&b.topic, b.partition, b.offset)));
    Ok(out)
}

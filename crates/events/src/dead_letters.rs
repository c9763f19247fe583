//! Reading the dead-letter topics back: every record of a `<topic>.dlq`
//! with why it was given up on, by which consumer group, and where it came
//! from (the `dlq.*` headers), for `orderctl dlq`; and sending records back
//! to where they came from ([`redrive`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::consumer::dlq_headers as h;
use crate::kafka::KafkaConfig;
use crate::reader::{read_to_end, LogReader, LoggedRecord, Start};

/// One dead-lettered record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was dead-lettered (the record's timestamp).
    pub timestamp: Option<DateTime<Utc>>,
    /// The record key (the order id for saga events).
    pub key: Option<String>,
    /// Machine-readable reason (`dlq.reason`), e.g. `handler-rejected`.
    pub reason: String,
    /// The error (`dlq.error`).
    pub error: String,
    /// The consumer group that gave up on it.
    pub group: String,
    /// Where it was read from: topic, partition, offset.
    pub original_topic: String,
    /// Original partition (-1 when the header is missing).
    pub original_partition: i32,
    /// Original offset (-1 when the header is missing).
    pub original_offset: i64,
    /// `eventType` header, when the record had one.
    pub event_type: Option<String>,
    /// `eventId` header, when the record had one.
    pub event_id: Option<String>,
    /// Every header, `dlq.*` included.
    pub headers: BTreeMap<String, String>,
    /// The value, byte for byte.
    #[serde(skip)]
    pub payload: Vec<u8>,
}

/// A dead-letter topic at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicSummary {
    /// Records on it.
    pub count: usize,
    /// The oldest one's timestamp.
    pub oldest: Option<DateTime<Utc>>,
    /// Records by `dlq.reason`.
    pub by_reason: BTreeMap<String, usize>,
    /// Records by consumer group.
    pub by_group: BTreeMap<String, usize>,
}

/// `letters` by dead-letter topic.
pub fn summarize(letters: &[DeadLetter]) -> BTreeMap<String, TopicSummary> {
    let mut out: BTreeMap<String, TopicSummary> = BTreeMap::new();
    for d in letters {
        let s = out.entry(d.dlq_topic.clone()).or_default();
        s.count += 1;
        s.oldest = match (s.oldest, d.timestamp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        *s.by_reason.entry(d.reason.clone()).or_default() += 1;
        *s.by_group.entry(d.group.clone()).or_default() += 1;
    }
    out
}

/// Every record of `topics` (dead-letter topics that do not exist are
/// skipped), from the beginning to the end they had when the read started.
/// Reads without a consumer group's offsets: nothing is committed. Blocking.
pub fn read_all(
    cfg: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<DeadLetter>, String> {
    let records = read_to_end(cfg, topics, "the dead letters", timeout)?;
    Ok(records.into_iter().map(DeadLetter::from).collect())
}

/// The newest dead letters of `topics`: up to `per_partition` from the
/// end of each partition, newest first, at most `limit` of them, and how
/// many records the topics hold in all. Its cost depends on `per_partition`
/// and the number of partitions, not on how many dead letters there are
/// (for the event-flow page, which asks every few seconds). Blocking.
pub fn read_latest(
    cfg: &KafkaConfig,
    topics: &[String],
    per_partition: u32,
    limit: usize,
    timeout: Duration,
) -> Result<(u64, Vec<DeadLetter>), String> {
    let reader = LogReader::open(cfg, topics, Start::Last(per_partition), timeout)?;
    let total = reader.held();
    let mut letters = Vec::new();
    reader.for_each("the latest dead letters", timeout, |r| {
        letters.push(DeadLetter::from(r));
        Ok(())
    })?;
    letters.sort_by(|a, b| {
        (b.timestamp, &b.dlq_topic, b.partition, b.offset).cmp(&(
            a.timestamp,
            &a.dlq_topic,
            a.partition,
            a.offset,
        ))
    });
    letters.truncate(limit);
    Ok((total, letters))
}

impl From<LoggedRecord> for DeadLetter {
    fn from(r: LoggedRecord) -> Self {
        let get = |k: &str| r.header(k).unwrap_or_default().to_owned();
        Self {
            reason: get(h::REASON),
            error: get(h::ERROR),
            group: get(h::GROUP),
            original_topic: get(h::TOPIC),
            original_partition: get(h::PARTITION).parse().unwrap_or(-1),
            original_offset: get(h::OFFSET).parse().unwrap_or(-1),
            event_type: r.header("eventType").map(str::to_owned),
            event_id: r.header("eventId").map(str::to_owned),
            dlq_topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            payload: r.payload,
            headers: r.headers,
        }
    }
}

/// Header a redriven record carries: the dead letter it came back from
/// (`<dlq topic>[<partition>]@<offset>`).
pub const REDRIVEN_FROM: &str = "dlq.redriven.from";

/// The records behind `letters`, once each: several consumer groups may
/// have dead-lettered the same record, and one copy back on its topic
/// reaches them all. In the order of their original position.
pub fn originals<'a>(letters: &[&'a DeadLetter]) -> Vec<&'a DeadLetter> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: Vec<&DeadLetter> = letters
        .iter()
        .copied()
        .filter(|d| !d.original_topic.is_empty())
        .filter(|d| {
            seen.insert((
                d.original_topic.clone(),
                d.original_partition,
                d.original_offset,
            ))
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.original_topic, a.original_partition, a.original_offset).cmp(&(
            &b.original_topic,
            b.original_partition,
            b.original_offset,
        ))
    });
    out
}

/// Where a redriven record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    /// The topic it went back to.
    pub topic: String,
    /// Its partition there (the original one).
    pub partition: i32,
    /// Its new offset.
    pub offset: i64,
}

/// Publishes each of `letters` back to its original topic and partition:
/// the same key, value and headers (so the same `eventId`: every consumer
/// group's inbox applies it at most once), without the `dlq.*` headers,
/// plus [`REDRIVEN_FROM`]. Idempotent producer, `acks=all`.
pub async fn redrive(cfg: &KafkaConfig, letters: &[&DeadLetter]) -> Result<Vec<Redriven>, String> {
    let producer: FutureProducer = cfg
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| format!("creating a Kafka producer: {e}"))?;
    let mut out = Vec::with_capacity(letters.len());
    for d in letters {
        let from = format!("{}[{}]@{}", d.dlq_topic, d.partition, d.offset);
        let mut headers = OwnedHeaders::new();
        for (k, v) in d.headers.iter().filter(|(k, _)| !k.starts_with("dlq.")) {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        headers = headers.insert(Header {
            key: REDRIVEN_FROM,
            value: Some(from.as_bytes()),
        });
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&d.original_topic)
            .payload(d.payload.as_slice())
            .headers(headers);
        if let Some(k) = &d.key {
            record = record.key(k);
        }
        if d.original_partition >= 0 {
            record = record.partition(d.original_partition);
        }
        let (partition, offset) = producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| format!("sending {from} back to {}: {e}", d.original_topic))
            .map(|delivery| (delivery.partition, delivery.offset))?;
        out.push(Redriven {
            topic: d.original_topic.clone(),
            partition,
            offset,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(topic: &str, reason: &str, group: &str, millis: i64) -> DeadLetter {
        DeadLetter {
            dlq_topic: topic.into(),
            partition: 0,
            offset: 0,
            timestamp: DateTime::from_timestamp_millis(millis),
            key: None,
            reason: reason.into(),
            error: "e".into(),
            group: group.into(),
            original_topic: topic.trim_end_matches(".dlq").into(),
            original_partition: 0,
            original_offset: 0,
            event_type: None,
            event_id: None,
            headers: BTreeMap::new(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_summary_counts_by_topic_reason_and_group_with_the_oldest() {
        let s = summarize(&[
            letter("a.dlq", "undecodable", "g1", 3_000),
            letter("a.dlq", "undecodable", "g2", 1_000),
            letter("a.dlq", "handler-rejected", "g1", 2_000),
            letter("b.dlq", "retries-exhausted", "g3", 5_000),
        ]);
        let a = &s["a.dlq"];
        assert_eq!(a.count, 3);
        assert_eq!(a.oldest, DateTime::from_timestamp_millis(1_000));
        assert_eq!(
            a.by_reason,
            BTreeMap::from([("handler-rejected".into(), 1), ("undecodable".into(), 2)])
        );
        assert_eq!(
            a.by_group,
            BTreeMap::from([("g1".into(), 2), ("g2".into(), 1)])
        );
        assert_eq!(s["b.dlq"].count, 1);
        assert!(summarize(&[]).is_empty());
    }

    #[test]
    fn a_record_dead_lettered_by_several_groups_goes_back_once() {
        let mut a1 = letter("t.dlq", "undecodable", "g1", 1);
        let mut a2 = letter("t.dlq", "undecodable", "g2", 2);
        let mut b = letter("t.dlq", "undecodable", "g1", 3);
        (a1.original_offset, a2.original_offset, b.original_offset) = (7, 7, 3);
        (a2.offset, b.offset) = (1, 2);
        let back = originals(&[&a1, &a2, &b]);
        let at: Vec<i64> = back.iter().map(|d| d.original_offset).collect();
        assert_eq!(at, [3, 7]);
        // Without an origin (the header is missing) there is nowhere to go.
        let mut lost = letter("t.dlq", "undecodable", "g1", 4);
        lost.original_topic.clear();
        assert!(originals(&[&lost]).is_empty());
    }
}

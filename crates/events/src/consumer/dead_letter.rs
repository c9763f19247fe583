//! Dead-letter records: the original record, unchanged, plus why it failed
//! and where it came from.

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};

/// Header names on dead-letter records.
pub mod headers {
    /// Machine-readable reason, e.g. `undecodable`, `unknown-schema-id`,
    /// `handler-rejected`, `retries-exhausted`.
    pub const REASON: &str = "dlq.reason";
    /// Human-readable error.
    pub const ERROR: &str = "dlq.error";
    /// Source topic.
    pub const TOPIC: &str = "dlq.original.topic";
    /// Source partition.
    pub const PARTITION: &str = "dlq.original.partition";
    /// Source offset.
    pub const OFFSET: &str = "dlq.original.offset";
    /// Consumer group that gave up on it.
    pub const GROUP: &str = "dlq.consumer.group";
    /// When (RFC 3339).
    pub const FAILED_AT: &str = "dlq.failed.at";
}

/// The headers of the dead letter for `msg`: its own headers followed by
/// the `dlq.*` ones.
pub(crate) fn dead_letter_headers(
    msg: &OwnedMessage,
    group: &str,
    reason: &str,
    error: &str,
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for header in h.iter() {
            out = out.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let now = chrono::Utc::now().to_rfc3339();
    for (k, v) in [
        (headers::REASON, reason),
        (headers::ERROR, error),
        (headers::TOPIC, msg.topic()),
        (headers::PARTITION, partition.as_str()),
        (headers::OFFSET, offset.as_str()),
        (headers::GROUP, group),
        (headers::FAILED_AT, now.as_str()),
    ] {
        out = out.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    out
}

//! Topic configuration: which logical event stream lives in which Kafka
//! topic, with how many partitions and what retention.
//!
//! The defaults are the table of the architecture decision record. Every
//! value can be overridden from the environment, so nothing about topics is
//! a literal scattered through the services:
//!
//! - `ORDERFLOW_TOPIC_PREFIX` is prepended to every topic name (useful to
//!   isolate test runs or environments sharing one cluster);
//! - `ORDERFLOW_TOPIC_<STREAM>` = `name[:partitions[:retention]]`, e.g.
//!   `ORDERFLOW_TOPIC_ORDER=orders-v2:32:90d`. Retention accepts `ms`, `s`,
//!   `m`, `h`, `d` and `y` suffixes (a year is 365 days) or `-1` (forever).
//! - `ORDERFLOW_DLQ_SUFFIX` (default `.dlq`) names the dead-letter topic of
//!   each consumed topic.

use std::collections::HashMap;
use std::fmt;

use crate::error::ConfigError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const YEAR_MS: i64 = 365 * DAY_MS;

/// A logical event stream; each maps to one Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Order lifecycle events.
    Order,
    /// Stock level changes and reservations.
    Inventory,
    /// Payment processing events.
    Payment,
    /// Shipping and delivery events.
    Shipping,
    /// Communication events.
    Notification,
    /// Compliance and audit trail.
    Audit,
}

impl Stream {
    /// Every stream, in a stable order.
    pub const ALL: [Stream; 6] = [
        Stream::Order,
        Stream::Inventory,
        Stream::Payment,
        Stream::Shipping,
        Stream::Notification,
        Stream::Audit,
    ];

    /// The name used in environment variables (`ORDERFLOW_TOPIC_<NAME>`).
    pub fn env_name(self) -> &'static str {
        match self {
            Stream::Order => "ORDER",
            Stream::Inventory => "INVENTORY",
            Stream::Payment => "PAYMENT",
            Stream::Shipping => "SHIPPING",
            Stream::Notification => "NOTIFICATION",
            Stream::Audit => "AUDIT",
        }
    }

    /// The default topic for this stream: name, partitions, retention.
    pub fn default_spec(self) -> TopicSpec {
        let (name, partitions, retention_ms) = match self {
            Stream::Order => ("order-events", 20, YEAR_MS),
            Stream::Inventory => ("inventory-events", 16, 7 * DAY_MS),
            Stream::Payment => ("payment-events", 12, 7 * YEAR_MS),
            Stream::Shipping => ("shipping-events", 8, YEAR_MS),
            Stream::Notification => ("notification-events", 4, 30 * DAY_MS),
            Stream::Audit => ("audit-events", 4, 7 * YEAR_MS),
        };
        TopicSpec {
            name: name.to_owned(),
            partitions,
            retention_ms,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.env_name())
    }
}

/// One Kafka topic to create or use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full topic name (prefix included).
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// `retention.ms`; `-1` keeps records forever.
    pub retention_ms: i64,
}

/// The resolved topic table for one deployment.
#[derive(Debug, Clone)]
pub struct TopicCatalog {
    topics: HashMap<Stream, TopicSpec>,
    dlq_suffix: String,
}

impl Default for TopicCatalog {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl TopicCatalog {
    /// The default table with `prefix` prepended to every name.
    pub fn with_prefix(prefix: &str) -> Self {
        let topics = Stream::ALL
            .iter()
            .map(|&s| {
                let mut spec = s.default_spec();
                spec.name = format!("{prefix}{}", spec.name);
                (s, spec)
            })
            .collect();
        Self {
            topics,
            dlq_suffix: ".dlq".to_owned(),
        }
    }

    /// Reads the table from the process environment (see the module docs).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the table through `lookup` (the environment in production, a map
    /// in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let prefix = lookup("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default();
        let mut catalog = Self::with_prefix(&prefix);
        if let Some(suffix) = lookup("ORDERFLOW_DLQ_SUFFIX") {
            if suffix.is_empty() {
                return Err(ConfigError::invalid(
                    "ORDERFLOW_DLQ_SUFFIX",
                    "must not be empty",
                ));
            }
            catalog.dlq_suffix = suffix;
        }
        for stream in Stream::ALL {
            let var = format!("ORDERFLOW_TOPIC_{}", stream.env_name());
            if let Some(value) = lookup(&var) {
                let spec = catalog
                    .topics
                    .get_mut(&stream)
                    .expect("every stream has a default");
                apply_override(spec, &prefix, &value)
                    .map_err(|why| ConfigError::invalid(&var, why))?;
            }
        }
        Ok(catalog)
    }

    /// The topic of `stream`.
    pub fn spec(&self, stream: Stream) -> &TopicSpec {
        self.topics.get(&stream).expect("every stream has a topic")
    }

    /// The topic name of `stream`.
    pub fn topic(&self, stream: Stream) -> &str {
        &self.spec(stream).name
    }

    /// The dead-letter topic for records consumed from `topic`.
    pub fn dlq_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dlq_suffix)
    }

    /// Every topic the system needs: one per stream plus a dead-letter
    /// topic for each (any stream may be consumed). Dead-letter topics keep
    /// the retention of their source and get at most 4 partitions.
    pub fn all_topics(&self) -> Vec<TopicSpec> {
        let mut out = Vec::new();
        for stream in Stream::ALL {
            let spec = self.spec(stream).clone();
            out.push(TopicSpec {
                name: self.dlq_topic(&spec.name),
                partitions: spec.partitions.min(4),
                retention_ms: spec.retention_ms,
            });
            out.push(spec);
        }
        out
    }
}

fn apply_override(spec: &mut TopicSpec, prefix: &str, value: &str) -> Result<(), String> {
    let mut parts = value.split(':');
    let name = parts.next().unwrap_or_default().trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "invalid topic name {name:?} (use letters, digits, '.', '_', '-')"
        ));
    }
    spec.name = format!("{prefix}{name}");
    if let Some(p) = parts.next() {
        spec.partitions = p
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid partition count {p:?} (a positive integer)"))?;
    }
    if let Some(r) = parts.next() {
        spec.retention_ms = parse_retention(r.trim())?;
    }
    if parts.next().is_some() {
        return Err("expected name[:partitions[:retention]]".to_owned());
    }
    Ok(())
}

/// Parses a retention such as `7d`, `12h`, `1y`, `60000ms` or `-1`.
pub fn parse_retention(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid retention {s:?} (e.g. 7d, 12h, 1y, 60000ms, -1)"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "y" => YEAR_MS,
        _ => {
            return Err(format!(
                "invalid retention unit {unit:?} in {s:?} (ms, s, m, h, d, y)"
            ))
        }
    };
    n.checked_mul(factor)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("retention {s:?} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_match_the_decision_record() {
        let c = TopicCatalog::default();
        assert_eq!(
            c.spec(Stream::Order),
            &TopicSpec {
                name: "order-events".into(),
                partitions: 20,
                retention_ms: YEAR_MS
            }
        );
        assert_eq!(c.spec(Stream::Inventory).partitions, 16);
        assert_eq!(c.spec(Stream::Payment).retention_ms, 7 * YEAR_MS);
        assert_eq!(c.spec(Stream::Notification).retention_ms, 30 * DAY_MS);
        assert_eq!(c.dlq_topic("order-events"), "order-events.dlq");
        assert_eq!(c.all_topics().len(), 12);
    }

    #[test]
    fn overrides_and_prefix_apply() {
        let c = TopicCatalog::from_lookup(env(&[
            ("ORDERFLOW_TOPIC_PREFIX", "t1-"),
            ("ORDERFLOW_TOPIC_ORDER", "orders:3:2h"),
            ("ORDERFLOW_DLQ_SUFFIX", "-dead"),
        ]))
        .expect("valid");
        assert_eq!(
            c.spec(Stream::Order),
            &TopicSpec {
                name: "t1-orders".into(),
                partitions: 3,
                retention_ms: 7_200_000
            }
        );
        assert_eq!(c.topic(Stream::Payment), "t1-payment-events");
        assert_eq!(c.dlq_topic("t1-orders"), "t1-orders-dead");
    }

    #[test]
    fn bad_overrides_are_rejected_with_the_variable_name() {
        for bad in [
            "",
            "or ders",
            "orders:0",
            "orders:x",
            "orders:2:7w",
            "orders:2:7d:extra",
        ] {
            let err = TopicCatalog::from_lookup(env(&[("ORDERFLOW_TOPIC_ORDER", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("ORDERFLOW_TOPIC_ORDER"), "{err}");
        }
    }

    #[test]
    fn retention_parses_units() {
        assert_eq!(parse_retention("-1"), Ok(-1));
        assert_eq!(parse_retention("1500"), Ok(1500));
        assert_eq!(parse_retention("2s"), Ok(2000));
        assert_eq!(parse_retention("1y"), Ok(YEAR_MS));
        assert!(parse_retention("0d").is_err());
        assert!(parse_retention("d").is_err());
    }
}

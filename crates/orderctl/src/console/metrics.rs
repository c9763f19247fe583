//! Reading the services' `/metrics` (Prometheus / OpenMetrics text) into
//! the few sums the event-flow page shows, and the rates between two
//! scrapes.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' name, e.g. `orderflow_events_consumed_total`.
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if it has one.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of an exposition text; comment lines (`# TYPE`, `# EOF`)
/// and lines that do not parse are left out.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let Some(open) = line.find('{') else {
        let (name, value) = line.split_once(' ')?;
        return Some(Sample {
            name: name.to_owned(),
            labels: Vec::new(),
            value: first_number(value)?,
        });
    };
    let mut labels = Vec::new();
    let mut rest = &line[open + 1..];
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some(Sample {
                name: line[..open].to_owned(),
                labels,
                value: first_number(after)?,
            });
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// The value after a series (a timestamp may follow it).
fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// What the page shows of one service, by topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceCounts {
    /// Events published, by topic (`orderflow_events_published_total`).
    pub published: BTreeMap<String, f64>,
    /// Records read by any of its consumer groups, by topic
    /// (`orderflow_events_consumed_total`, every outcome).
    pub consumed: BTreeMap<String, f64>,
    /// Records its groups are behind, by topic (`orderflow_consumer_lag`).
    pub lag: BTreeMap<String, f64>,
    /// Records its groups dead-lettered, by the topic they came from.
    pub dead_lettered: BTreeMap<String, f64>,
    /// Records on dead-letter topics, by dead-letter topic
    /// (`orderflow_dlq_records`).
    pub dlq_records: BTreeMap<String, f64>,
}

impl ServiceCounts {
    /// The sums of `samples`.
    pub fn of(samples: &[Sample]) -> Self {
        let mut c = Self::default();
        for s in samples {
            let Some(topic) = s.label("topic") else {
                continue;
            };
            let into = match s.name.as_str() {
                "orderflow_events_published_total" => &mut c.published,
                "orderflow_events_consumed_total" => &mut c.consumed,
                "orderflow_consumer_lag" => &mut c.lag,
                "orderflow_events_dead_lettered_total" => &mut c.dead_lettered,
                "orderflow_dlq_records" => &mut c.dlq_records,
                _ => continue,
            };
            *into.entry(topic.to_owned()).or_default() += s.value;
        }
        c
    }
}

/// Per second between two counters `secs` apart; a counter that went down
/// (the service restarted) counts from zero.
pub fn rate(before: Option<f64>, now: f64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    match before {
        Some(b) if now >= b => (now - b) / secs,
        Some(_) => now / secs,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP orderflow_events_consumed Records consumed.
# TYPE orderflow_events_consumed counter
orderflow_events_consumed_total{group="order-service",topic="payment-events",event_type="PaymentProcessed",outcome="applied"} 7
orderflow_events_consumed_total{group="order-service.journal",topic="payment-events",event_type="PaymentProcessed",outcome="applied"} 7
orderflow_events_consumed_total{group="order-service",topic="inventory-events",event_type="Odd \"quoted\", name",outcome="skipped"} 2
orderflow_consumer_lag{group="order-service",topic="payment-events",partition="0"} 3
orderflow_consumer_lag{group="order-service",topic="payment-events",partition="1"} 1
orderflow_events_published_total{topic="order-events",event_type="OrderCreated"} 12 1700000000
orderflow_dlq_records{topic="payment-events.dlq"} 1
orderflow_outbox_backlog 4
not a sample
# EOF
"#;

    #[test]
    fn samples_with_quoted_labels_and_timestamps() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 8, "{s:#?}");
        assert_eq!(s[2].label("event_type"), Some(r#"Odd "quoted", name"#));
        assert_eq!(s[2].label("outcome"), Some("skipped"));
        assert_eq!(s[5].value, 12.0);
        assert_eq!(s[7].name, "orderflow_outbox_backlog");
        assert_eq!(s[7].value, 4.0);
        assert!(s[7].labels.is_empty());
    }

    #[test]
    fn counts_sum_groups_and_partitions_by_topic() {
        let c = ServiceCounts::of(&parse(TEXT));
        assert_eq!(c.consumed["payment-events"], 14.0);
        assert_eq!(c.consumed["inventory-events"], 2.0);
        assert_eq!(c.lag["payment-events"], 4.0);
        assert_eq!(c.published["order-events"], 12.0);
        assert_eq!(c.dlq_records["payment-events.dlq"], 1.0);
        assert!(c.dead_lettered.is_empty());
    }

    #[test]
    fn rates_between_scrapes() {
        assert_eq!(rate(Some(10.0), 30.0, 2.0), 10.0);
        assert_eq!(rate(None, 30.0, 2.0), 0.0, "no rate from one scrape");
        assert_eq!(
            rate(Some(50.0), 4.0, 2.0),
            2.0,
            "a restart counts from zero"
        );
        assert_eq!(rate(Some(1.0), 2.0, 0.0), 0.0);
    }
}

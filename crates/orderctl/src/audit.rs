//! `orderctl audit`: who did what, read back from the log. `--order ID` is
//! one order's whole history: every event of its saga (the business topics,
//! by correlation id) with the actions people and tools took on it
//! (`audit-events`), in time order. `--actor NAME` is every action one
//! subject took. Also the records `orderctl` itself writes when an operator
//! acts through it ([`AuditWriter`]).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use order_service::handlers::{EVENTS_RECORDED, EVENT_RECORDED};
use orderflow_events::codec::AvroCodec;
use orderflow_events::events::{AuditRecorded, Event, RecordedEvent};
use orderflow_events::kafka::{EventProducer, KafkaConfig, OutgoingRecord};
use orderflow_events::reader::{read_to_end, LoggedRecord};
use orderflow_events::relay::record_headers;
use orderflow_events::topics::Stream;
use orderflow_events::{Envelope, TopicCatalog};
use serde::Serialize;

use crate::dlq::{Broker, Registry};

/// How long reading the topics may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The `source` of the records `orderctl` writes.
pub const SOURCE: &str = "orderctl";

/// Who acts through `orderctl`, and where its records go.
#[derive(clap::Args, Debug, Clone)]
pub struct Recorder {
    /// Who is acting, for the audit trail (default: the login name, `$USER`).
    #[arg(long, env = "ORDERCTL_ACTOR")]
    pub actor: Option<String>,
    /// To encode the audit record.
    #[command(flatten)]
    pub registry: Registry,
}

impl Recorder {
    /// The acting operator's name.
    pub fn actor(&self) -> String {
        self.actor
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `audit` renamed to `action`, with `error` in its detail when given:
/// the record an action writes before it is taken (`…_started`, so that a
/// crash in between still leaves a trace of it) or when it failed
/// (`…_failed`); the action's own record follows a success.
pub fn stage(audit: &AuditRecorded, action: &str, error: Option<&str>) -> AuditRecorded {
    let mut out = audit.clone();
    action.clone_into(&mut out.action);
    if let Some(e) = error {
        out.detail.insert("error".to_owned(), e.to_owned());
    }
    out
}

/// Publishes the audit records of actions taken through `orderctl`: one
/// codec and one producer for all of them.
pub struct AuditWriter {
    codec: AvroCodec,
    producer: EventProducer,
    topic: String,
}

impl AuditWriter {
    /// A writer to `catalog`'s audit topic.
    pub fn new(
        cfg: &KafkaConfig,
        catalog: &TopicCatalog,
        recorder: &Recorder,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            codec: recorder.registry.codec(true)?,
            producer: EventProducer::new(cfg).context("creating a Kafka producer")?,
            topic: catalog.topic(Stream::Audit).to_owned(),
        })
    }

    /// Publishes `audit` (in the saga `correlation_id`, else a new one) and
    /// waits for the broker to take it.
    pub async fn write(
        &self,
        audit: AuditRecorded,
        correlation_id: Option<String>,
    ) -> anyhow::Result<Envelope> {
        let correlation_id = correlation_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let key = audit
            .order_id
            .clone()
            .unwrap_or_else(|| audit.subject.clone());
        let envelope = Envelope::new(SOURCE, correlation_id, audit);
        let value = self
            .codec
            .encode(&self.topic, &envelope)
            .await
            .context("encoding the audit record")?;
        self.producer
            .send_and_wait(&OutgoingRecord {
                topic: self.topic.clone(),
                key,
                payload: value,
                headers: record_headers(&envelope, None),
            })
            .await
            .with_context(|| format!("publishing the audit record on {}", self.topic))?;
        Ok(envelope)
    }
}

/// `orderctl audit`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("whose").required(true).args(["order", "actor"])))]
pub struct AuditArgs {
    #[command(flatten)]
    broker: Broker,
    /// To decode the events.
    #[command(flatten)]
    registry: Registry,
    /// One order's history: its saga's events and the actions on it.
    #[arg(long)]
    order: Option<String>,
    /// Every action this subject took (a token's `sub`, or an operator's
    /// name given to orderctl).
    #[arg(long)]
    actor: Option<String>,
    /// Print JSON (an array, oldest first) instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of the trail.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When it happened (the event's timestamp), RFC 3339 in UTC with
    /// milliseconds always (so the text sorts as the time does).
    #[serde(serialize_with = "millis")]
    pub timestamp: DateTime<Utc>,
    /// The event's type.
    pub event_type: String,
    /// Its id.
    pub event_id: String,
    /// The service or tool that wrote it.
    pub source: String,
    /// Its saga.
    pub correlation_id: String,
    /// The event it answers, if any.
    pub causation_id: Option<String>,
    /// Where it is on the log.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// For an action: what, who, on what, and what it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<AuditRecorded>,
}

/// Prints the trail; exit 1 when it is empty.
pub async fn run(catalog: &TopicCatalog, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let audit_topic = catalog.topic(Stream::Audit).to_owned();
    let topics: Vec<String> = match &args.order {
        Some(_) => Stream::ALL
            .into_iter()
            .map(|s| catalog.topic(s).to_owned())
            .collect(),
        None => vec![audit_topic.clone()],
    };
    let mut cfg = KafkaConfig::from_env("orderctl");
    cfg.bootstrap_servers
        .clone_from(&args.broker.bootstrap_servers);
    let records =
        tokio::task::spawn_blocking(move || read_to_end(&cfg, &topics, "the topics", READ_TIMEOUT))
            .await
            .context("the reader task")?
            .map_err(anyhow::Error::msg)?;
    // A saga's events (and the actions on its order) carry its correlation
    // id in a header, so only those are decoded from the business topics;
    // the audit trail's records of events hold many orders' events, so
    // every record of the audit topic is.
    let candidates = records.into_iter().filter(|r| match &args.order {
        Some(order) => r.topic == audit_topic || r.header("correlationId") == Some(order.as_str()),
        None => r.topic == audit_topic,
    });
    let codec = args.registry.codec(false)?;
    let mut entries = Vec::new();
    for r in candidates {
        match codec.decode(&r.payload).await {
            Ok(envelope) => entries.extend(entries_of(&r, envelope)),
            Err(e) => eprintln!(
                "orderctl: skipping {}[{}]@{}: {e}",
                r.topic, r.partition, r.offset
            ),
        }
    }
    if let Some(order) = &args.order {
        entries.retain(|e| &e.correlation_id == order);
    }
    let mut entries = trail(entries);
    if let Some(actor) = &args.actor {
        entries.retain(|e| e.action.as_ref().is_some_and(|a| &a.actor == actor));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        for e in &entries {
            println!("{}", line(e));
        }
    }
    if entries.is_empty() {
        eprintln!("orderctl: nothing recorded for that");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A business event recorded on the audit trail (the order journal records
/// them, [`order_service::handlers::recorded_events`]) as the event
/// itself: same id, type, source, time and place on the log, so the trail
/// lists the event once, from its topic or, after the topic's retention,
/// from the record.
fn recorded_event(e: &RecordedEvent) -> Option<Entry> {
    Some(Entry {
        timestamp: DateTime::from_timestamp_millis(e.occurred_at)?,
        event_type: e.event_type.clone(),
        event_id: e.event_id.clone(),
        source: e.source.clone(),
        correlation_id: e.correlation_id.clone(),
        causation_id: e.causation_id.clone(),
        topic: e.topic.clone(),
        partition: e.partition,
        offset: e.offset,
        action: None,
    })
}

/// A business event's copy as releases before `AuditRecorded` v2 wrote
/// it (one record per event, its details in `detail`), as the event
/// itself. `None` for a copy missing a field (listed as an action then).
fn copied_event(a: &AuditRecorded, correlation_id: &str) -> Option<Entry> {
    let d = &a.detail;
    Some(Entry {
        timestamp: DateTime::parse_from_rfc3339(d.get("occurredAt")?)
            .ok()?
            .with_timezone(&Utc),
        event_type: d.get("eventType")?.clone(),
        event_id: a.event_ids.first()?.clone(),
        source: a.actor.clone(),
        correlation_id: correlation_id.to_owned(),
        causation_id: d.get("causationId").cloned(),
        topic: d.get("topic")?.clone(),
        partition: d.get("partition")?.parse().ok()?,
        offset: d.get("offset")?.parse().ok()?,
        action: None,
    })
}

/// What one record adds to a trail: the event itself, the action it
/// records, or the business events an audit record holds.
fn entries_of(r: &LoggedRecord, envelope: Envelope) -> Vec<Entry> {
    let action = match &envelope.event {
        Event::AuditRecorded(a) if a.action == EVENTS_RECORDED => {
            let mut listed = Vec::with_capacity(a.events.len());
            for e in &a.events {
                match recorded_event(e) {
                    Some(entry) => listed.push(entry),
                    None => eprintln!(
                        "orderctl: skipping event {} recorded in {}[{}]@{}: its time ({} ms) is out of range",
                        e.event_id, r.topic, r.partition, r.offset, e.occurred_at
                    ),
                }
            }
            return listed;
        }
        Event::AuditRecorded(a) => {
            if a.action == EVENT_RECORDED {
                if let Some(copied) = copied_event(a, &envelope.correlation_id) {
                    return vec![copied];
                }
            }
            Some(a.clone())
        }
        _ => None,
    };
    vec![Entry {
        timestamp: envelope.timestamp,
        event_type: envelope.event_type().name().to_owned(),
        event_id: envelope.event_id.to_string(),
        source: envelope.source,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id.map(|c| c.to_string()),
        topic: r.topic.clone(),
        partition: r.partition,
        offset: r.offset,
        action,
    }]
}

/// `entries` once each (a record sent back from the dead letters is on its
/// topic twice with one event id: the first copy counts), oldest first.
fn trail(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| {
        (a.timestamp, &a.topic, a.partition, a.offset).cmp(&(
            b.timestamp,
            &b.topic,
            b.partition,
            b.offset,
        ))
    });
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| seen.insert(e.event_id.clone()));
    entries
}

fn line(e: &Entry) -> String {
    let when = e.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
    match &e.action {
        Some(a) => {
            let detail: Vec<String> = a.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(
                "{when}  {:<20} {:<30} by {} ({}) on {}{}",
                e.source,
                a.action,
                a.actor,
                a.actor_roles.join(","),
                a.subject,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!("  {}", detail.join(" "))
                },
            )
        }
        None => format!(
            "{when}  {:<20} {:<30} {}",
            e.source, e.event_type, e.event_id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, id: &str, topic: &str) -> Entry {
        Entry {
            timestamp: DateTime::from_timestamp_millis(ms).expect("time"),
            event_type: "OrderCreated".into(),
            event_id: id.into(),
            source: "order-service".into(),
            correlation_id: "o-1".into(),
            causation_id: None,
            topic: topic.into(),
            partition: 0,
            offset: ms,
            action: None,
        }
    }

    #[test]
    fn the_trail_is_oldest_first_and_lists_a_redriven_event_once() {
        let t = trail(vec![
            at(3, "c", "order-events"),
            at(1, "a", "order-events"),
            at(2, "b", "payment-events"),
            // The same event sent back from the dead letters later.
            at(5, "b", "payment-events"),
        ]);
        let ids: Vec<&str> = t.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(t[1].offset, 2, "the first copy counts");
    }

    #[test]
    fn a_record_of_events_lists_each_event_as_itself_once() {
        let event = |id: &str, order: &str, ms: i64| RecordedEvent {
            event_id: id.into(),
            event_type: "PaymentProcessed".into(),
            event_version: 1,
            source: "payment-service".into(),
            correlation_id: order.into(),
            causation_id: Some("a".into()),
            occurred_at: ms,
            topic: "payment-events".into(),
            partition: 0,
            offset: ms,
        };
        // The journal's record of `events`, as `recorded_events` writes it.
        let record_of = |events: Vec<RecordedEvent>| {
            Envelope::new(
                "order-service",
                "a-new-id",
                AuditRecorded {
                    action: EVENTS_RECORDED.into(),
                    actor: "order-service".into(),
                    actor_roles: vec!["service".into()],
                    subject: "events".into(),
                    order_id: None,
                    event_ids: events.iter().map(|e| e.event_id.clone()).collect(),
                    detail: [("count".to_owned(), events.len().to_string())].into(),
                    events,
                },
            )
        };
        let record = record_of(vec![event("b", "o-1", 2), event("x", "o-2", 4)]);
        let logged = LoggedRecord {
            topic: "audit-events".into(),
            partition: 3,
            offset: 77,
            timestamp: None,
            key: None,
            headers: Default::default(),
            payload: Vec::new(),
        };
        let got = entries_of(&logged, record);
        let ids: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.event_id.as_str(), e.correlation_id.as_str()))
            .collect();
        assert_eq!(ids, [("b", "o-1"), ("x", "o-2")]);
        let b = &got[0];
        assert_eq!(
            (
                b.source.as_str(),
                b.event_type.as_str(),
                b.topic.as_str(),
                b.offset
            ),
            ("payment-service", "PaymentProcessed", "payment-events", 2),
            "the event where its topic held it: {b:?}"
        );
        assert_eq!(
            b.timestamp,
            DateTime::from_timestamp_millis(2).expect("time")
        );
        assert_eq!(b.causation_id.as_deref(), Some("a"));
        assert!(b.action.is_none(), "an event, not an action");
        // One whose time cannot be a time is left out (and said so), not the rest.
        let mut broken = event("y", "o-1", 6);
        broken.occurred_at = i64::MAX;
        let record = record_of(vec![broken, event("z", "o-1", 8)]);
        let kept: Vec<String> = entries_of(&logged, record)
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(kept, ["z"]);
        // Read from its topic as well, the event is listed once.
        let mut from_topic = at(2, "b", "payment-events");
        from_topic.source = "payment-service".into();
        let t = trail(vec![at(1, "a", "order-events"), b.clone(), from_topic]);
        let ids: Vec<&str> = t.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn json_timestamps_always_have_milliseconds() {
        let json = serde_json::to_value(at(48_000, "x", "order-events")).expect("json");
        assert_eq!(json["timestamp"], "1970-01-01T00:00:48.000Z");
    }

    #[test]
    fn an_action_line_names_who_did_what_on_what() {
        let mut e = at(0, "x", "audit-events");
        e.action = Some(AuditRecorded {
            action: "stock.adjusted".into(),
            actor: "ops-ann".into(),
            actor_roles: vec!["operator".into()],
            subject: "sku:S1".into(),
            order_id: None,
            event_ids: vec![],
            detail: [("delta".to_owned(), "5".to_owned())].into(),
            events: Vec::new(),
        });
        let l = line(&e);
        assert!(l.contains("stock.adjusted"), "{l}");
        assert!(
            l.contains("by ops-ann (operator) on sku:S1  delta=5"),
            "{l}"
        );
    }
}

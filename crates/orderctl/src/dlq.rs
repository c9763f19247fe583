//! `orderctl dlq`: the dead-lettered records, without a Kafka client of
//! one's own. `list` summarises every dead-letter topic of the topic table;
//! `show` prints one record: where it came from, why it was given up on,
//! its headers, and the event decoded with the schema registry; `redrive`
//! sends chosen records back to their topics once the cause is fixed, and
//! records that on the audit trail.

use std::process::ExitCode;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use chrono::SecondsFormat;
use orderflow_events::codec::AvroCodec;
use orderflow_events::dead_letters::{
    originals, read_all, redrive as send_back, summarize, DeadLetter, Redriven,
};
use orderflow_events::events::AuditRecorded;
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::registry::RegistryClient;
use orderflow_events::topics::Stream;
use orderflow_events::TopicCatalog;

use crate::audit::{stage, AuditWriter, Recorder};

/// How long reading the topics may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the broker is.
#[derive(clap::Args, Debug, Clone)]
pub struct Broker {
    /// Kafka bootstrap servers (KAFKA_PROP_* apply as in the services).
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
}

/// Where the schema registry is.
#[derive(clap::Args, Debug, Clone)]
pub struct Registry {
    /// Schema registry URL.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub registry_url: String,
    /// HTTP Basic credentials for the registry, `user:password` (instead of
    /// putting them in the URL).
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        hide_env_values = true
    )]
    pub registry_user_info: Option<String>,
}

impl Registry {
    /// A client of this registry, with its credentials.
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        Ok(RegistryClient::new(&self.registry_url)?
            .with_user_info(self.registry_user_info.as_deref())?)
    }

    /// An Avro codec on this registry; `register` lets it register the
    /// schemas it writes with.
    pub fn codec(&self, register: bool) -> anyhow::Result<AvroCodec> {
        Ok(AvroCodec::new(self.client()?, register)?)
    }
}

/// `orderctl dlq list`.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    broker: Broker,
    /// Print JSON (one object, by dead-letter topic) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `orderctl dlq show`.
#[derive(clap::Args, Debug, Clone)]
pub struct ShowArgs {
    #[command(flatten)]
    broker: Broker,
    /// To decode the event.
    #[command(flatten)]
    registry: Registry,
    /// The dead-letter topic, e.g. order-events.dlq.
    topic: String,
    /// Its partition.
    partition: i32,
    /// Its offset.
    offset: i64,
}

/// `orderctl dlq redrive`.
#[derive(clap::Args, Debug, Clone)]
pub struct RedriveArgs {
    #[command(flatten)]
    broker: Broker,
    /// Only this dead-letter topic (e.g. payment-events.dlq); default all.
    #[arg(long)]
    topic: Option<String>,
    /// Only the record of this event (`eventId` header).
    #[arg(long)]
    event_id: Option<String>,
    /// Only the records of this saga (`correlationId` header: the order id).
    #[arg(long)]
    correlation_id: Option<String>,
    /// Only records dead-lettered for this reason (e.g. quarantined).
    #[arg(long)]
    reason: Option<String>,
    /// Only records this consumer group gave up on.
    #[arg(long)]
    group: Option<String>,
    /// Every dead letter of the chosen topics (needed when no other filter
    /// is given).
    #[arg(long)]
    all: bool,
    /// Print what would be sent back, and send nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    recorder: Recorder,
}

pub async fn read(broker: &Broker, topics: Vec<String>) -> anyhow::Result<Vec<DeadLetter>> {
    let mut cfg = KafkaConfig::from_env("orderctl");
    cfg.bootstrap_servers.clone_from(&broker.bootstrap_servers);
    tokio::task::spawn_blocking(move || read_all(&cfg, &topics, READ_TIMEOUT))
        .await
        .context("the reader task")?
        .map_err(anyhow::Error::msg)
}

/// The dead-letter topic of every stream.
pub fn dlq_topics(catalog: &TopicCatalog) -> Vec<String> {
    Stream::ALL
        .iter()
        .map(|&s| catalog.dlq_topic(catalog.topic(s)))
        .collect()
}

/// Prints every dead-letter topic: count, oldest, by reason, by group.
pub async fn list(catalog: &TopicCatalog, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let topics = dlq_topics(catalog);
    let letters = read(&args.broker, topics.clone()).await?;
    let summary = summarize(&letters);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:>6}  {:<24}  by reason / by group",
        "topic", "count", "oldest"
    );
    for topic in topics {
        let Some(s) = summary.get(&topic) else {
            println!("{topic:<32} {:>6}  {:<24}", 0, "-");
            continue;
        };
        let oldest = s
            .oldest
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into());
        let join = |m: &std::collections::BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "{topic:<32} {:>6}  {oldest:<24}  {} / {}",
            s.count,
            join(&s.by_reason),
            join(&s.by_group)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one dead letter with its event decoded; exit 1 when there is no
/// record at that position.
pub async fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let letters = read(&args.broker, vec![args.topic.clone()]).await?;
    let Some(d) = letters
        .into_iter()
        .find(|d| d.partition == args.partition && d.offset == args.offset)
    else {
        eprintln!(
            "orderctl: no dead letter at {}[{}]@{}",
            args.topic, args.partition, args.offset
        );
        return Ok(ExitCode::from(1));
    };
    let codec = args.registry.codec(false)?;
    let event = match codec.decode(&d.payload).await {
        Ok(envelope) => envelope.to_json()?,
        Err(e) => serde_json::json!({
            "undecodable": e.to_string(),
            "bytes": d.payload.len(),
        }),
    };
    let mut out = serde_json::to_value(&d)?;
    out["event"] = event;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// Who asked for a redrive, and how they chose the records: what its
/// audit records say.
pub struct RedriveBy<'a> {
    /// The actor and the registry of the audit records' codec.
    pub recorder: &'a Recorder,
    /// The actor's roles.
    pub roles: Vec<String>,
    /// The filters that chose the records (`eventIdFilter` …).
    pub filters: BTreeMap<String, String>,
}

/// The redrive's audit records, one per order whose events go back (so
/// `orderctl audit --order` shows it) and one for records of no order,
/// named `action`.
fn redrive_records(
    by: &RedriveBy<'_>,
    back: &[&DeadLetter],
) -> Vec<(Option<String>, AuditRecorded)> {
    let mut by_order: BTreeMap<Option<String>, Vec<&DeadLetter>> = BTreeMap::new();
    for d in back {
        by_order
            .entry(d.headers.get("correlationId").cloned())
            .or_default()
            .push(d);
    }
    let actor = by.recorder.actor();
    by_order
        .into_iter()
        .map(|(order, letters)| {
            let topics: BTreeSet<&str> = letters.iter().map(|d| d.dlq_topic.as_str()).collect();
            let mut detail = BTreeMap::from([("records".to_owned(), letters.len().to_string())]);
            detail.extend(by.filters.clone());
            let audit = AuditRecorded {
                action: "dead_letters.redriven".to_owned(),
                actor: actor.clone(),
                actor_roles: by.roles.clone(),
                subject: format!("topic:{}", topics.into_iter().collect::<Vec<_>>().join(",")),
                order_id: order.clone(),
                event_ids: letters.iter().filter_map(|d| d.event_id.clone()).collect(),
                detail,
                events: Vec::new(),
            };
            (order, audit)
        })
        .collect()
}

/// Sends `back` to their topics, recorded on the audit trail before
/// (`dead_letters.redrive_started`: if that cannot be written, nothing is
/// sent) and after (`dead_letters.redriven`, or
/// `dead_letters.redrive_failed` with the error).
pub async fn redrive_recorded(
    cfg: &KafkaConfig,
    catalog: &TopicCatalog,
    by: &RedriveBy<'_>,
    back: &[&DeadLetter],
) -> anyhow::Result<Vec<Redriven>> {
    let writer = AuditWriter::new(cfg, catalog, by.recorder)?;
    let records = redrive_records(by, back);
    for (order, audit) in &records {
        writer
            .write(
                stage(audit, "dead_letters.redrive_started", None),
                order.clone(),
            )
            .await
            .context("recording the redrive before it: nothing was sent back")?;
    }
    let landed = match send_back(cfg, back).await {
        Ok(landed) => landed,
        Err(e) => {
            for (order, audit) in &records {
                let failed = stage(audit, "dead_letters.redrive_failed", Some(&e));
                if let Err(w) = writer.write(failed, order.clone()).await {
                    tracing::warn!(error = %w, "could not record the failed redrive");
                }
            }
            anyhow::bail!("sending the dead letters back: {e}");
        }
    };
    for (order, audit) in records {
        writer
            .write(audit, order)
            .await
            .context("sent back, but the record that says so could not be written")?;
    }
    Ok(landed)
}

/// Sends the chosen dead letters back to their original topics (each
/// record once, whichever groups dead-lettered it); the same `eventId`, so
/// a consumer that applied it before skips it. Exit 1 when nothing matched.
pub async fn redrive(catalog: &TopicCatalog, args: &RedriveArgs) -> anyhow::Result<ExitCode> {
    let filtered = args.event_id.is_some()
        || args.correlation_id.is_some()
        || args.reason.is_some()
        || args.group.is_some();
    anyhow::ensure!(
        filtered || args.all,
        "say which dead letters to send back (--event-id, --correlation-id, --reason, \
         --group), or --all for every one of the chosen topics"
    );
    let topics = match &args.topic {
        Some(t) => vec![t.clone()],
        None => dlq_topics(catalog),
    };
    let letters = read(&args.broker, topics).await?;
    let header = |d: &DeadLetter, k: &str| d.headers.get(k).cloned();
    let chosen: Vec<&DeadLetter> = letters
        .iter()
        .filter(|d| args.event_id.is_none() || d.event_id == args.event_id)
        .filter(|d| {
            args.correlation_id.is_none() || header(d, "correlationId") == args.correlation_id
        })
        .filter(|d| args.reason.as_ref().is_none_or(|r| &d.reason == r))
        .filter(|d| args.group.as_ref().is_none_or(|g| &d.group == g))
        .collect();
    let back = originals(&chosen);
    if back.is_empty() {
        eprintln!("orderctl: no dead letter matches");
        return Ok(ExitCode::from(1));
    }
    let verb = if args.dry_run {
        "would send back"
    } else {
        "sent back"
    };
    let landed = if args.dry_run {
        Vec::new()
    } else {
        let mut cfg = KafkaConfig::from_env("orderctl");
        cfg.bootstrap_servers
            .clone_from(&args.broker.bootstrap_servers);
        let filters = [
            ("eventIdFilter", &args.event_id),
            ("correlationIdFilter", &args.correlation_id),
            ("reasonFilter", &args.reason),
            ("groupFilter", &args.group),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.clone()?)))
        .collect();
        let by = RedriveBy {
            recorder: &args.recorder,
            roles: vec!["operator".to_owned()],
            filters,
        };
        redrive_recorded(&cfg, catalog, &by, &back).await?
    };
    for (i, d) in back.iter().enumerate() {
        let to = landed
            .get(i)
            .map(|r| format!(" -> {}[{}]@{}", r.topic, r.partition, r.offset))
            .unwrap_or_default();
        println!(
            "{verb} {}[{}]@{} ({} {} {}, {}){to}",
            d.original_topic,
            d.original_partition,
            d.original_offset,
            d.event_type.as_deref().unwrap_or("-"),
            d.event_id.as_deref().unwrap_or("-"),
            d.reason,
            d.group,
        );
    }
    Ok(ExitCode::SUCCESS)
}

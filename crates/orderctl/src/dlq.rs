//! `orderctl dlq`: the dead-lettered records, without a Kafka client of
//! one's own. `list` summarises every dead-letter topic of the topic table;
//! `show` prints one record: where it came from, why it was given up on,
//! its headers, and the event decoded with the schema registry.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::SecondsFormat;
use orderflow_events::codec::AvroCodec;
use orderflow_events::dead_letters::{read_all, summarize, DeadLetter};
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::registry::RegistryClient;
use orderflow_events::topics::Stream;
use orderflow_events::TopicCatalog;

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
    /// Schema registry URL, to decode the event.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    registry_url: String,
    /// The dead-letter topic, e.g. order-events.dlq.
    topic: String,
    /// Its partition.
    partition: i32,
    /// Its offset.
    offset: i64,
}

async fn read(broker: &Broker, topics: Vec<String>) -> anyhow::Result<Vec<DeadLetter>> {
    let mut cfg = KafkaConfig::from_env("orderctl");
    cfg.bootstrap_servers.clone_from(&broker.bootstrap_servers);
    tokio::task::spawn_blocking(move || read_all(&cfg, &topics, READ_TIMEOUT))
        .await
        .context("the reader task")?
        .map_err(anyhow::Error::msg)
}

/// The dead-letter topic of every stream.
fn dlq_topics(catalog: &TopicCatalog) -> Vec<String> {
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
    let codec = AvroCodec::new(RegistryClient::new(&args.registry_url)?, false)?;
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

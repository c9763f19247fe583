//! `orderctl replay`: the log read again, two ways.
//!
//! - `--projection order-journal` rebuilds the order journal (the order
//!   service's projection of every saga event) from the topics into
//!   `order_journal_next` and swaps it in: from the beginning, from
//!   `--from-timestamp`, or only one saga's events (`--correlation-id`).
//!   The live projection keeps running; the swap carries over what it
//!   projected outside the replay. Nothing about the saga changes.
//! - `--group G --to-timestamp T` moves a stopped consumer group's
//!   committed offsets back to the first record at or after `T`, so the
//!   service reads those records again when it starts; its inbox skips the
//!   events it applied. Refused while the group has members, and never
//!   moves a group forward (that would skip records).
//!
//! Both are recorded on the audit trail.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use order_service::db::journal::{self, JournalRow, Range, Scope, Table};
use orderflow_events::access::{self, ORDER_JOURNAL};
use orderflow_events::admin::{commit_offsets, topic_partitions};
use orderflow_events::events::AuditRecorded;
use orderflow_events::inbox::Origin;
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::reader::{LogReader, LoggedRecord, Start};
use orderflow_events::TopicCatalog;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use crate::audit::{stage, AuditWriter, Recorder};
use crate::dlq::Broker;

/// How long the log read may take in all.
const READ_TIMEOUT: Duration = Duration::from_secs(600);
/// Broker round trips (metadata, offsets, group description).
const BROKER_TIMEOUT: Duration = Duration::from_secs(15);
/// Journal rows written per statement.
const BATCH: usize = 500;

/// The projections `orderctl replay` can rebuild.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// The order service's journal of every saga event (`order_journal`).
    OrderJournal,
}

/// `orderctl replay`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["projection", "group"])))]
pub struct ReplayArgs {
    /// Rebuild this projection from the topics and swap it in.
    #[arg(long, value_enum)]
    projection: Option<Projection>,
    /// With --projection: replay the records from this time on (RFC 3339;
    /// default: from the beginning of each topic).
    #[arg(long, value_parser = parse_time, requires = "projection")]
    from_timestamp: Option<DateTime<Utc>>,
    /// With --projection: replay only this saga's events.
    #[arg(long, requires = "projection")]
    correlation_id: Option<String>,
    /// With --projection: the order service's database, as its owner role
    /// (the migrations' MIGRATION_DATABASE_URL): the swap renames tables.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Move this consumer group (stopped) back to --to-timestamp.
    #[arg(long, requires = "to_timestamp")]
    group: Option<String>,
    /// With --group: the time to move it back to (RFC 3339).
    #[arg(long, value_parser = parse_time, requires = "group")]
    to_timestamp: Option<DateTime<Utc>>,
    /// With --group: the topics it reads, for a group that is not one of
    /// orderflow's (theirs come from the access table).
    #[arg(long = "topic", requires = "group")]
    topics: Vec<String>,
    /// Say what would happen and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    broker: Broker,
    #[command(flatten)]
    recorder: Recorder,
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time (e.g. 2026-12-04T10:00:00Z): {e}"))
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs the replay the arguments ask for.
pub async fn run(catalog: &TopicCatalog, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = KafkaConfig::from_env("orderctl");
    cfg.bootstrap_servers
        .clone_from(&args.broker.bootstrap_servers);
    match (&args.group, args.to_timestamp) {
        (Some(group), Some(to)) => rewind(catalog, &cfg, args, group, to).await,
        _ => rebuild_journal(catalog, &cfg, args).await,
    }
}

/// What the log read gave the journal.
#[derive(Debug, Default)]
struct Replayed {
    records: u64,
    events: u64,
    undecodable: u64,
}

async fn rebuild_journal(
    catalog: &TopicCatalog,
    cfg: &KafkaConfig,
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let Some(url) = &args.database_url else {
        bail!("--projection needs the order database: --database-url or DATABASE_URL (its owner role)");
    };
    let mut db = PgConnection::connect(url)
        .await
        .context("connecting to the order database")?;
    if !args.dry_run {
        let locked = journal::begin_rebuild(&mut db).await.map_err(owner_hint)?;
        if !locked {
            bail!("another rebuild of the order journal is running; try again when it is done");
        }
    }
    let topics: Vec<String> = ORDER_JOURNAL
        .reads
        .iter()
        .map(|&s| catalog.topic(s).to_owned())
        .collect();
    let start = args
        .from_timestamp
        .map_or(Start::Beginning, Start::Timestamp);
    let reader = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || LogReader::open(&cfg, &topics, start, BROKER_TIMEOUT))
            .await
            .context("the reader task")?
            .map_err(anyhow::Error::msg)?
    };
    let ranges: Vec<Range> = reader
        .ranges()
        .iter()
        .map(|r| Range {
            topic: r.topic.clone(),
            partition: r.partition,
            start: r.start,
            end: r.end,
        })
        .collect();
    let bar = ProgressBar::new(reader.span()).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} records ({per_sec}, {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("replaying");
    let (tx, mut rx) = mpsc::channel::<LoggedRecord>(4 * BATCH);
    let read = tokio::task::spawn_blocking(move || {
        reader.for_each("the saga's topics", READ_TIMEOUT, |r| {
            tx.blocking_send(r)
                .map_err(|_| "the writer stopped".to_owned())
        })
    });
    let codec = args.recorder.registry.codec(false)?;
    let mut replayed = Replayed::default();
    let mut rows = Vec::with_capacity(BATCH);
    while let Some(r) = rx.recv().await {
        bar.inc(1);
        replayed.records += 1;
        if let Some(id) = &args.correlation_id {
            if r.header("correlationId").is_some_and(|c| c != id) {
                continue;
            }
        }
        let envelope = match codec.decode(&r.payload).await {
            Ok(e) => e,
            Err(e) => {
                // The live projection dead-letters such a record: neither
                // has a row for it.
                bar.suspend(|| {
                    eprintln!(
                        "orderctl: skipping {}[{}]@{}: {e}",
                        r.topic, r.partition, r.offset
                    );
                });
                replayed.undecodable += 1;
                continue;
            }
        };
        if args
            .correlation_id
            .as_ref()
            .is_some_and(|id| *id != envelope.correlation_id)
        {
            continue;
        }
        let origin = Origin {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
        };
        rows.push(JournalRow::new(&envelope, &origin, r.key.as_deref()));
        replayed.events += 1;
        if rows.len() >= BATCH {
            write(&mut db, args.dry_run, &mut rows).await?;
        }
    }
    read.await
        .context("the reader task")?
        .map_err(anyhow::Error::msg)?;
    write(&mut db, args.dry_run, &mut rows).await?;
    bar.finish_and_clear();
    let scope_text = match (&args.correlation_id, args.from_timestamp) {
        (Some(id), Some(t)) => format!("saga {id} from {}", time(&t)),
        (Some(id), None) => format!("saga {id}"),
        (None, Some(t)) => format!("from {}", time(&t)),
        (None, None) => "from the beginning".to_owned(),
    };
    println!(
        "replayed {} records of {} partitions ({scope_text}): {} events, {} undecodable",
        replayed.records,
        ranges.iter().filter(|r| r.end > r.start).count(),
        replayed.events,
        replayed.undecodable
    );
    if args.dry_run {
        println!("dry run: the journal is unchanged");
        return Ok(ExitCode::SUCCESS);
    }
    let mut detail = BTreeMap::from([
        ("records".to_owned(), replayed.records.to_string()),
        ("events".to_owned(), replayed.events.to_string()),
    ]);
    if let Some(t) = args.from_timestamp {
        detail.insert("from".to_owned(), time(&t));
    }
    let started = AuditRecorded {
        action: "projection.rebuild_started".to_owned(),
        actor: args.recorder.actor(),
        actor_roles: vec!["operator".to_owned()],
        subject: "projection:order-journal".to_owned(),
        // A saga's replay is part of that order's history.
        order_id: args.correlation_id.clone(),
        event_ids: Vec::new(),
        detail,
        events: Vec::new(),
    };
    // Recorded before the swap, the one step the live journal sees.
    let writer = AuditWriter::new(cfg, catalog, &args.recorder)?;
    writer
        .write(started.clone(), args.correlation_id.clone())
        .await
        .context("recording the rebuild before the swap: the live journal is unchanged")?;
    let scope = Scope {
        ranges,
        correlation_id: args.correlation_id.clone(),
    };
    let swapped = match journal::swap(&mut db, &scope).await {
        Ok(swapped) => swapped,
        Err(e) => {
            let e = owner_hint(e);
            let failed = stage(
                &started,
                "projection.rebuild_failed",
                Some(&format!("{e:#}")),
            );
            if let Err(w) = writer.write(failed, args.correlation_id.clone()).await {
                tracing::warn!(error = %w, "could not record the failed rebuild");
            }
            return Err(e);
        }
    };
    println!(
        "swapped in: order_journal has {} rows ({} carried over from the live journal)",
        swapped.rows, swapped.kept
    );
    let mut audit = stage(&started, "projection.rebuilt", None);
    audit
        .detail
        .insert("rows".to_owned(), swapped.rows.to_string());
    audit
        .detail
        .insert("kept".to_owned(), swapped.kept.to_string());
    writer.write(audit, args.correlation_id.clone()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn write(
    db: &mut PgConnection,
    dry_run: bool,
    rows: &mut Vec<JournalRow>,
) -> anyhow::Result<()> {
    if !dry_run && !rows.is_empty() {
        journal::insert(db, Table::Next, rows)
            .await
            .context("writing order_journal_next")?;
    }
    rows.clear();
    Ok(())
}

/// A permission error says which role a rebuild needs.
fn owner_hint(e: sqlx::Error) -> anyhow::Error {
    let denied = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42501");
    let e = anyhow::Error::new(e);
    if denied {
        e.context(
            "the rebuild renames the journal's tables: connect as the order database's owner \
             role (the migrations' MIGRATION_DATABASE_URL), not the service's runtime role",
        )
    } else {
        e.context("rebuilding the order journal")
    }
}

/// One partition of a rewind: where the group is and where it goes.
struct Move {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    target: i64,
}

impl Move {
    /// The offset to commit: only ever back.
    fn new_offset(&self) -> Option<i64> {
        self.committed
            .filter(|&c| self.target < c)
            .map(|_| self.target)
    }
}

async fn rewind(
    catalog: &TopicCatalog,
    cfg: &KafkaConfig,
    args: &ReplayArgs,
    group: &str,
    to: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let prefix = std::env::var("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default();
    let topics: Vec<String> = if args.topics.is_empty() {
        let Some(streams) = access::group_reads(group, &prefix) else {
            let known: Vec<String> = access::SERVICES
                .iter()
                .flat_map(|s| s.groups(&prefix))
                .map(|(g, _)| g)
                .collect();
            bail!(
                "{group:?} is not one of orderflow's consumer groups ({}); name the topics it \
                 reads with --topic",
                known.join(", ")
            );
        };
        streams
            .iter()
            .map(|&s| catalog.topic(s).to_owned())
            .collect()
    } else {
        args.topics.clone()
    };
    let plan = {
        let (cfg, group) = (cfg.clone(), group.to_owned());
        tokio::task::spawn_blocking(move || plan_rewind(&cfg, &group, &topics, to))
            .await
            .context("the broker task")??
    };
    let moves = match plan {
        Plan::Active(members) => {
            eprintln!(
                "orderctl: consumer group {group} has {} active member(s) ({}): stop the \
                 service first (locally: stop scripts/up and start only the infrastructure \
                 with scripts/up --infra-only; on Kubernetes: scale its deployment to 0), \
                 then run this again",
                members.len(),
                members.join(", ")
            );
            return Ok(ExitCode::from(1));
        }
        Plan::Moves(moves) => moves,
    };
    println!(
        "{:<32} {:>9} {:>10} {:>10}",
        "topic", "partition", "committed", "new"
    );
    let mut again = 0;
    let (committed, never): (Vec<&Move>, Vec<&Move>) =
        moves.iter().partition(|m| m.committed.is_some());
    for m in committed {
        let new = m.new_offset();
        again += new.map_or(0, |n| m.committed.unwrap_or(n) - n);
        println!(
            "{:<32} {:>9} {:>10} {:>10}",
            m.topic,
            m.partition,
            m.committed.map_or("-".to_owned(), |c| c.to_string()),
            new.map_or("unchanged".to_owned(), |n| n.to_string())
        );
    }
    if !never.is_empty() {
        // The group reads these from the beginning anyway.
        println!(
            "({} partitions where {group} has committed nothing: unchanged)",
            never.len()
        );
    }
    let moved: Vec<&Move> = moves.iter().filter(|m| m.new_offset().is_some()).collect();
    if args.dry_run {
        println!("dry run: {group} would read {again} records again; nothing committed");
        return Ok(ExitCode::SUCCESS);
    }
    if moved.is_empty() {
        println!(
            "{group} has nothing committed after {}: nothing to move",
            time(&to)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let started = AuditRecorded {
        action: "consumer_group.rewind_started".to_owned(),
        actor: args.recorder.actor(),
        actor_roles: vec!["operator".to_owned()],
        subject: format!("group:{group}"),
        order_id: None,
        event_ids: Vec::new(),
        detail: BTreeMap::from([
            ("to".to_owned(), time(&to)),
            ("partitions".to_owned(), moved.len().to_string()),
            ("records".to_owned(), again.to_string()),
        ]),
        events: Vec::new(),
    };
    let writer = AuditWriter::new(cfg, catalog, &args.recorder)?;
    writer
        .write(started.clone(), None)
        .await
        .context("recording the move before it: the group's offsets are unchanged")?;
    let committed = {
        let (cfg, group) = (cfg.clone(), group.to_owned());
        let offsets: Vec<(String, i32, i64)> = moved
            .iter()
            .filter_map(|m| m.new_offset().map(|n| (m.topic.clone(), m.partition, n)))
            .collect();
        tokio::task::spawn_blocking(move || commit(&cfg, &group, &offsets))
            .await
            .context("the broker task")
            .and_then(|r| r)
    };
    if let Err(e) = committed {
        let failed = stage(
            &started,
            "consumer_group.rewind_failed",
            Some(&format!("{e:#}")),
        );
        if let Err(w) = writer.write(failed, None).await {
            tracing::warn!(error = %w, "could not record the failed move");
        }
        return Err(e);
    }
    println!(
        "moved {group} back to {} on {} partitions: {again} records will be read again (the \
         inbox skips the events already applied)",
        time(&to),
        moved.len()
    );
    writer
        .write(stage(&started, "consumer_group.rewound", None), None)
        .await?;
    Ok(ExitCode::SUCCESS)
}

enum Plan {
    /// The group has members: their client ids.
    Active(Vec<String>),
    /// Each partition's move.
    Moves(Vec<Move>),
}

/// A client of `group` that never joins it: it describes the group and
/// commits offsets as a group-less (`generation -1`) member, which the
/// broker accepts only while the group is empty.
fn group_client(cfg: &KafkaConfig, group: &str) -> anyhow::Result<BaseConsumer> {
    cfg.client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("creating a Kafka consumer")
}

fn plan_rewind(
    cfg: &KafkaConfig,
    group: &str,
    topics: &[String],
    to: DateTime<Utc>,
) -> anyhow::Result<Plan> {
    let client = group_client(cfg, group)?;
    let groups = client
        .fetch_group_list(Some(group), BROKER_TIMEOUT)
        .with_context(|| format!("describing consumer group {group}"))?;
    let members: Vec<String> = groups
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| {
            let who = if m.client_id().is_empty() {
                m.id()
            } else {
                m.client_id()
            };
            if m.client_host().is_empty() {
                who.to_owned()
            } else {
                format!("{who} on {}", m.client_host())
            }
        })
        .collect();
    if !members.is_empty() {
        return Ok(Plan::Active(members));
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition) in
        topic_partitions(&client, topics, BROKER_TIMEOUT).context("reading the topic list")?
    {
        list.add_partition_offset(&topic, partition, Offset::Offset(to.timestamp_millis()))?;
    }
    if list.count() == 0 {
        bail!("none of {topics:?} exists");
    }
    let targets = client
        .offsets_for_times(list.clone(), BROKER_TIMEOUT)
        .with_context(|| format!("finding the offsets at {}", time(&to)))?;
    let committed = client
        .committed_offsets(list, BROKER_TIMEOUT)
        .with_context(|| format!("reading the committed offsets of {group}"))?;
    let mut moves = Vec::new();
    for e in targets.elements() {
        let (topic, partition) = (e.topic().to_owned(), e.partition());
        let target = match e.offset() {
            Offset::Offset(o) => o,
            // No record at or after the time: the partition's end.
            _ => {
                client
                    .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
                    .with_context(|| format!("reading the end of {topic}[{partition}]"))?
                    .1
            }
        };
        let committed = match committed
            .find_partition(&topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        moves.push(Move {
            topic,
            partition,
            committed,
            target,
        });
    }
    moves.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(Plan::Moves(moves))
}

fn commit(cfg: &KafkaConfig, group: &str, offsets: &[(String, i32, i64)]) -> anyhow::Result<()> {
    let client = group_client(cfg, group)?;
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    commit_offsets(&client, group, &list, BROKER_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("{e} (did a member join meanwhile?)"))?;
    Ok(())
}

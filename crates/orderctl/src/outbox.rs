//! `orderctl outbox`: the rows a service's relay set aside because it could
//! not encode them (`outbox_failed`). `failed` lists them; `retry` moves
//! them back to the outbox after the fix, where the relay publishes them
//! like any other row (and sets aside again one that still fails), and
//! records the retry on the audit trail.

use std::process::ExitCode;

use anyhow::Context;
use chrono::SecondsFormat;
use orderflow_events::events::AuditRecorded;
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::outbox::failed;
use orderflow_events::TopicCatalog;
use sqlx::{Connection, PgConnection};

use crate::audit::{stage, AuditWriter, Recorder};
use crate::dlq::Broker;

/// The service database.
#[derive(clap::Args, Debug, Clone)]
pub struct Database {
    /// PostgreSQL URL of the service's database (its runtime or owner role).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// `orderctl outbox failed`.
#[derive(clap::Args, Debug, Clone)]
pub struct FailedArgs {
    #[command(flatten)]
    db: Database,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `orderctl outbox retry`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetryArgs {
    #[command(flatten)]
    db: Database,
    /// The rows to move back (their `id` in `orderctl outbox failed`).
    #[arg(long = "id", required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<i64>,
    /// Every set-aside row.
    #[arg(long)]
    all: bool,
    /// Where the audit record of the retry goes.
    #[command(flatten)]
    broker: Broker,
    #[command(flatten)]
    recorder: Recorder,
}

async fn connect(db: &Database) -> anyhow::Result<PgConnection> {
    PgConnection::connect(&db.database_url)
        .await
        .context("connecting to the service database")
}

/// Lists the set-aside rows.
pub async fn list(args: &FailedArgs) -> anyhow::Result<ExitCode> {
    let rows = failed::list(&mut connect(&args.db).await?).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8}  {:<36}  {:<22}  {:<24}  reason",
        "id", "eventId", "eventType", "failedAt"
    );
    for r in rows {
        println!(
            "{:>8}  {:<36}  {:<22}  {:<24}  {}",
            r.id,
            r.event_id,
            r.event_type,
            r.failed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves rows back to the outbox and records that on the audit trail; exit
/// 1 when none was moved.
pub async fn retry(catalog: &TopicCatalog, args: &RetryArgs) -> anyhow::Result<ExitCode> {
    let ids = (!args.all).then_some(args.ids.as_slice());
    let mut cfg = KafkaConfig::from_env("orderctl");
    cfg.bootstrap_servers
        .clone_from(&args.broker.bootstrap_servers);
    let writer = AuditWriter::new(&cfg, catalog, &args.recorder)?;
    let mut db = connect(&args.db).await?;
    // Before: which rows were asked for (all of them, or these ids).
    let asked = AuditRecorded {
        action: "outbox.retry_started".to_owned(),
        actor: args.recorder.actor(),
        actor_roles: vec!["operator".to_owned()],
        subject: "outbox_failed".to_owned(),
        order_id: None,
        event_ids: Vec::new(),
        detail: [(
            "rows".to_owned(),
            if args.all {
                "all".to_owned()
            } else {
                args.ids
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            },
        )]
        .into(),
        events: Vec::new(),
    };
    writer
        .write(asked.clone(), None)
        .await
        .context("recording the retry before it: no row was moved")?;
    let moved = match failed::retry(&mut db, ids).await {
        Ok(moved) => moved,
        Err(e) => {
            let failed = stage(&asked, "outbox.retry_failed", Some(&e.to_string()));
            if let Err(w) = writer.write(failed, None).await {
                tracing::warn!(error = %w, "could not record the failed retry");
            }
            return Err(e.into());
        }
    };
    for id in &moved {
        println!("back in the outbox: event {id}");
    }
    let audit = AuditRecorded {
        action: "outbox.retried".to_owned(),
        event_ids: moved.iter().map(ToString::to_string).collect(),
        detail: [("rows".to_owned(), moved.len().to_string())].into(),
        ..asked
    };
    writer.write(audit, None).await?;
    if moved.is_empty() {
        eprintln!("orderctl: no set-aside row matched");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

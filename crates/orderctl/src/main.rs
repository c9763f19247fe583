//! `orderctl`: operator CLI for orderflow.
//!
//! - `orderctl topics create` creates every topic of the configured topic
//!   table (and its dead-letter topic) idempotently;
//! - `orderctl schemas register` registers every event schema under its
//!   subject and sets the subject's compatibility level;
//! - `orderctl schemas check` asks the registry whether the schemas are
//!   compatible with what is registered, and fails if one is not;
//! - `orderctl load` drives `POST /orders` at a rate or concurrency, waits
//!   for every saga to finish and reports throughput and latencies (see
//!   `docs/benchmarks.md`);
//! - `orderctl bench run` is one benchmark run of `scripts/bench`: it
//!   starts the services (with the stack library the end-to-end tests
//!   use), runs the load, measures, checks the invariants and reports; its
//!   steps are `orderctl bench snap|sample|invariants|report`;
//! - `orderctl smtp-sink` is an SMTP server that stores every message in a
//!   Maildir, for local runs and benchmarks;
//! - `orderctl stack` runs the five services, an SMTP sink and the
//!   event-flow page in the foreground on the environment's
//!   infrastructure, with the stack library the end-to-end tests use
//!   (`scripts/up` runs it);
//! - `orderctl token` signs a bearer token for the HTTP APIs (by default
//!   with the development key);
//! - `orderctl dlq list` summarises the dead-letter topics (count, oldest,
//!   by reason, by consumer group) and `orderctl dlq show` prints one dead
//!   letter with its event decoded; `orderctl dlq redrive` sends chosen
//!   dead letters back to their topics and records that on the audit
//!   trail;
//! - `orderctl audit --order ID` prints one order's history (its saga's
//!   events and the actions people and tools took on it) and `orderctl
//!   audit --actor NAME` every action one subject took;
//! - `orderctl outbox failed` lists the rows a service's relay set aside
//!   (it could not encode them) and `orderctl outbox retry` moves them back
//!   after the fix;
//! - `orderctl replay --projection order-journal` rebuilds the order
//!   journal from the topics and swaps it in; `orderctl replay --group G
//!   --to-timestamp T` moves a stopped consumer group back in time;
//! - `orderctl console` serves the event-flow page (topology with live
//!   rates, one order's saga, the latest dead letters);
//! - `orderctl acls` prints the broker's ACLs (one principal per service,
//!   writing only its own stream) as `kafka-acls.sh` commands.
//!
//! Configuration comes from the same environment variables the services
//! read (`KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL`,
//! `ORDERFLOW_TOPIC_*`), overridable with flags.

mod audit;
mod bench;
mod console;
mod dlq;
mod load;
mod outbox;
mod replay;
mod schemas;
mod smtp_sink;
mod stack_run;
mod token;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use orderflow_events::admin::{ensure_topics, TopicOutcome};
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::TopicCatalog;

#[derive(Parser)]
#[command(
    name = "orderctl",
    version,
    about = "Operate an orderflow deployment: topics, schemas, load generation, an SMTP sink and tokens"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kafka topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Avro schemas in the schema registry.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Generate load: POST /orders at a rate or concurrency, wait for every
    /// saga to finish, report throughput and latencies (JSON + SVG).
    Load(Box<load::Args>),
    /// The saga benchmark (scripts/bench): `run` starts the services,
    /// loads, measures, checks the invariants and reports; its steps are
    /// subcommands of their own.
    Bench {
        #[command(subcommand)]
        action: bench::Action,
    },
    /// Run an SMTP server that accepts every message and stores it in a
    /// Maildir (DIR/new), until Ctrl-C or SIGTERM.
    SmtpSink(smtp_sink::Args),
    /// Run the five services, an SMTP sink and the event-flow page in the
    /// foreground on the infrastructure of the environment (what scripts/up
    /// runs after starting it): topics and schemas created, databases kept
    /// between runs, every consumer assigned before it says the services
    /// are up; until Ctrl-C or SIGTERM (exit 0) or until one of them dies
    /// (exit 1).
    Stack(Box<stack_run::Args>),
    /// Print a bearer token for the HTTP APIs, signed by default with the
    /// development key (deploy/dev-keys/).
    Token(token::Args),
    /// Print the broker ACLs of every principal (from the access table in
    /// crates/events/src/access.rs) as a shell script of kafka-acls.sh
    /// commands, for the configured topic names and ORDERFLOW_TOPIC_PREFIX.
    Acls,
    /// Outbox rows a service's relay set aside because it could not encode
    /// them.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Dead-lettered records.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The audit trail: one order's history (--order) or one actor's
    /// actions (--actor), oldest first.
    Audit(audit::AuditArgs),
    /// Read the log again: rebuild a projection from the topics
    /// (--projection), or move a stopped consumer group back in time
    /// (--group --to-timestamp).
    Replay(Box<replay::ReplayArgs>),
    /// Serve the event-flow page: the services and their topics with live
    /// rates, lag and dead letters, one order's saga as a swimlane, the
    /// latest dead letters.
    Console(Box<console::ConsoleArgs>),
}

#[derive(Subcommand)]
enum OutboxAction {
    /// List the set-aside rows (outbox_failed) of a service database.
    Failed(outbox::FailedArgs),
    /// Move set-aside rows back to the outbox, after the fix.
    Retry(outbox::RetryArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// Every dead-letter topic: how many records, the oldest, by reason and
    /// by consumer group.
    List(dlq::ListArgs),
    /// One dead letter: where it came from, why, its headers and its event.
    Show(dlq::ShowArgs),
    /// Send dead letters back to their topics (each record once, same
    /// eventId, so consumers that applied it skip it); --dry-run to look.
    Redrive(dlq::RedriveArgs),
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every topic (and dead-letter topic) that does not exist yet.
    Create {
        /// Kafka bootstrap servers.
        #[arg(
            long,
            env = "KAFKA_BOOTSTRAP_SERVERS",
            default_value = "127.0.0.1:9092"
        )]
        bootstrap_servers: String,
        /// Replication factor of new topics.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
        replication: i32,
    },
    /// Print the configured topic table.
    List,
}

#[derive(Subcommand)]
enum SchemasAction {
    /// Register every event schema and set its subject's compatibility level.
    Register(schemas::Args),
    /// Check every event schema against the registry; exit 1 if any is
    /// incompatible.
    Check(schemas::Args),
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("orderctl: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = match cli.command {
        Command::Load(args) => return load::run(*args).await,
        Command::Bench { action } => return bench::run(action).await,
        Command::SmtpSink(args) => return smtp_sink::run(args).await,
        Command::Stack(args) => return stack_run::run(*args).await,
        Command::Token(args) => return token::run(&args),
        other => other,
    };
    let catalog = TopicCatalog::from_env().context("reading the topic configuration")?;
    match command {
        Command::Topics {
            action: TopicsAction::List,
        } => {
            println!(
                "{:<28} {:>10} {:>16}",
                "topic", "partitions", "retention.ms"
            );
            for t in catalog.all_topics() {
                println!("{:<28} {:>10} {:>16}", t.name, t.partitions, t.retention_ms);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Topics {
            action:
                TopicsAction::Create {
                    bootstrap_servers,
                    replication,
                },
        } => {
            // KAFKA_PROP_* (SASL, timeouts, ...) apply as in the services;
            // the flag wins over KAFKA_BOOTSTRAP_SERVERS.
            let mut cfg = KafkaConfig::from_env("orderctl");
            cfg.bootstrap_servers.clone_from(&bootstrap_servers);
            let outcomes = ensure_topics(&cfg, &catalog.all_topics(), replication)
                .await
                .with_context(|| format!("creating topics on {bootstrap_servers}"))?;
            for (name, outcome) in outcomes {
                let what = match outcome {
                    TopicOutcome::Created => "created",
                    TopicOutcome::Existed => "exists",
                };
                println!("{what:<8} {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schemas {
            action: SchemasAction::Register(args),
        } => schemas::register(&catalog, &args).await,
        Command::Schemas {
            action: SchemasAction::Check(args),
        } => schemas::check(&catalog, &args).await,
        Command::Outbox {
            action: OutboxAction::Failed(args),
        } => outbox::list(&args).await,
        Command::Outbox {
            action: OutboxAction::Retry(args),
        } => outbox::retry(&catalog, &args).await,
        Command::Dlq {
            action: DlqAction::List(args),
        } => dlq::list(&catalog, &args).await,
        Command::Dlq {
            action: DlqAction::Show(args),
        } => dlq::show(&args).await,
        Command::Dlq {
            action: DlqAction::Redrive(args),
        } => dlq::redrive(&catalog, &args).await,
        Command::Audit(args) => audit::run(&catalog, &args).await,
        Command::Replay(args) => replay::run(&catalog, &args).await,
        Command::Console(args) => console::run(catalog, &args).await,
        Command::Acls => {
            let prefix = std::env::var("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default();
            let rules = orderflow_events::access::acls(&catalog, &prefix);
            print!("{}", orderflow_events::access::render_kafka_acls(&rules));
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(_)
        | Command::Bench { .. }
        | Command::SmtpSink(_)
        | Command::Stack(_)
        | Command::Token(_) => {
            unreachable!("handled above")
        }
    }
}

/// A command's flags alone, for the unit tests of each command's flags.
#[cfg(test)]
#[derive(Parser)]
struct FlagsOnly<A: clap::Args> {
    #[command(flatten)]
    args: A,
}

/// Parses `argv` as the flags `A` of command `name`; the error is clap's
/// message.
#[cfg(test)]
fn parse_flags<A: clap::Args>(name: &str, argv: &[&str]) -> Result<A, String> {
    FlagsOnly::<A>::try_parse_from(std::iter::once(name).chain(argv.iter().copied()))
        .map(|c| c.args)
        .map_err(|e| e.to_string())
}

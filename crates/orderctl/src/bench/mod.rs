//! `orderctl bench`: the saga benchmark. `run` is a whole run: it starts
//! the services with the stack library the end-to-end tests use, loads
//! them and reports (`scripts/bench` installs and starts the broker and
//! the registry, then calls it). Its parts are subcommands of their own,
//! to re-take one step by hand: the process snapshots (`snap`), the
//! pipeline sampler (`sample`), one value of a JSON file (`get`) and the
//! summary of a run's files (`report`). The invariants are checked by
//! `orderflow_stack::check`, the checker of the fault campaign and the
//! end-to-end tests.

mod dbstat;
mod procfs;
mod report;
mod run;
mod sample;
mod settle;

pub(crate) use run::parse_smtp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

/// What `orderctl bench` does.
#[derive(Subcommand)]
pub enum Action {
    /// One benchmark run: start the five services (fresh databases
    /// `bench_<service>`) on the broker and registry of the environment,
    /// load them with `orderctl load`'s flags, measure, check the
    /// invariants and write `summary.json`. Exits 0 when the invariants
    /// hold and the load saw no errors, 1 when an invariant is violated, 3
    /// when only the load reported errors.
    Run(Box<run::Args>),
    /// Write a snapshot of processes (CPU ticks, RSS, peak RSS), of
    /// PostgreSQL's processes by database and of the machine's busy time.
    Snap {
        /// Where the snapshot (JSON) goes.
        out: PathBuf,
        /// The processes, `name=pid` each.
        procs: Vec<String>,
    },
    /// Every INTERVAL, append each service's outbox backlog and consumer
    /// lag per topic (from its /metrics) to OUT as one JSON line, until
    /// stopped.
    Sample {
        /// The JSON-lines file.
        out: PathBuf,
        /// The services, `name=port` each.
        targets: Vec<String>,
        /// Time between samples.
        #[arg(long, default_value = "5s", value_parser = nonzero_duration)]
        interval: Duration,
    },
    /// Print one value of a JSON file, by a dotted path (`config.skus`).
    Get {
        /// The file.
        file: PathBuf,
        /// The path.
        key: String,
    },
    /// Join the load's summary, the snapshots, the samples, the final
    /// /metrics and the invariants into summary.json and print it; exits 1
    /// when an invariant is violated.
    Report(report::Files),
}

/// A duration of at least a millisecond.
fn nonzero_duration(s: &str) -> Result<Duration, String> {
    let d = orderflow_service::config::parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?}: must be at least 1ms"));
    }
    Ok(d)
}

/// Runs `action`.
pub async fn run(action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Run(args) => return run::run(*args).await,
        Action::Snap { out, procs } => procfs::write_snap(&out, &procs)?,
        Action::Sample {
            out,
            targets,
            interval,
        } => sample::run(&out, &targets, interval).await?,
        Action::Get { file, key } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", file.display()))?;
            let found = key
                .split('.')
                .try_fold(&v, |v, k| v.get(k))
                .with_context(|| format!("{} has no {key}", file.display()))?;
            match found {
                serde_json::Value::String(s) => println!("{s}"),
                other => println!("{other}"),
            }
        }
        Action::Report(files) => {
            if !report::run(&files)? {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `orderctl bench run`: one benchmark run, start to end. It starts the
//! five services (fresh databases `bench_<service>`, the SMTP sink) with
//! the stack library the end-to-end tests use (`orderflow_stack`), every
//! service setting at its default, on the broker and registry that
//! `scripts/bench` started (`KAFKA_BOOTSTRAP_SERVERS`,
//! `SCHEMA_REGISTRY_URL`); samples idle RSS, runs the load in-process while
//! the pipeline sampler and `top` record, snapshots CPU and peak RSS,
//! scrapes the final `/metrics`, waits for the outboxes to drain and the
//! invariants to hold (or the quiesce timeout), reads the databases'
//! counters once the services stopped, and writes the report.
//!
//! Files in `--out-dir`: `summary.json`, `summary-latency.svg`, `top.log`,
//! `top-before.log`, `pipeline.jsonl`, `metrics/<service>.prom`,
//! `logs/stack/` (the services' and the SMTP sink's logs, the Maildir),
//! `work/` (the parts the report is made of) and a copy of the first six
//! per run in `runs/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orderflow_stack::{Service, Smtp, Stack, StackOptions};

use super::procfs::{machine, top};
use super::{dbstat, procfs, report, sample, settle};

/// Options of `orderctl bench run`.
#[derive(Debug, clap::Args)]
#[group(id = "bench-run")]
pub struct Args {
    /// Where the summary, the plot, the logs and a copy per run go.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
    /// The run's databases are `<id>_<service>`, dropped and made anew.
    #[arg(long, default_value = "bench", value_parser = parse_id)]
    pub id: String,
    /// The stack's SMTP sink: `orderctl` (`orderctl smtp-sink`) or
    /// `aiosmtpd` (the Python one the tests use; needs `ORDERFLOW_PYTHON`).
    #[arg(long, default_value = "orderctl", value_parser = parse_smtp)]
    pub smtp: Smtp,
    /// How long the stack idles before its idle RSS is sampled.
    #[arg(long, default_value = "5s", value_parser = crate::load::schedule::parse_positive_duration)]
    pub idle_wait: Duration,
    /// How long to wait after the load for the outboxes to drain and
    /// compensations in flight to finish before the invariants count.
    #[arg(long, default_value = "60s", value_parser = crate::load::schedule::parse_positive_duration)]
    pub quiesce_timeout: Duration,
    /// How long each service's consumer may take to be assigned its
    /// partitions before the run starts.
    #[arg(long, env = "ORDERFLOW_ASSIGN_TIMEOUT", default_value = "120s",
          value_parser = crate::load::schedule::parse_positive_duration)]
    pub assign_timeout: Duration,
    /// Other processes to measure beside the services and the SMTP sink,
    /// `name=pid` each (the broker and the registry `scripts/bench`
    /// started).
    #[arg(long = "process", value_parser = parse_named_pid)]
    pub processes: Vec<String>,
    /// The load. Its service URLs and `--out` are the run's own: the URLs
    /// of the services started here and `<out-dir>/work/load-summary.json`.
    #[command(flatten)]
    pub load: crate::load::Args,
}

/// `orderctl`, `aiosmtpd` or `external`.
pub(crate) fn parse_smtp(s: &str) -> Result<Smtp, String> {
    match s {
        "orderctl" => Ok(Smtp::Orderctl),
        "aiosmtpd" => Ok(Smtp::Aiosmtpd),
        "external" => Ok(Smtp::External),
        _ => Err(format!(
            "{s:?}: the SMTP sink is orderctl, aiosmtpd or external"
        )),
    }
}

/// A database name prefix the report recognises: `bench` or `bench_…`.
fn parse_id(s: &str) -> Result<String, String> {
    let valid = (s == "bench" || s.starts_with("bench_"))
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: `bench` or `bench_` followed by lower-case letters, digits and '_' (at most 40 bytes)"
        ))
    }
}

fn parse_named_pid(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((name, pid)) if !name.is_empty() && pid.parse::<u32>().is_ok_and(|p| p > 0) => {
            Ok(s.to_owned())
        }
        _ => Err(format!("{s:?} is not name=pid")),
    }
}

/// Exit status of a run whose invariants hold but whose load reported
/// errors (e.g. timeouts).
const LOAD_ERRORS: u8 = 3;

/// Runs the benchmark: 0 when the invariants hold and the load saw no
/// errors, 1 when an invariant is violated, 3 when only the load reported
/// errors.
pub async fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // The invariants read the sink's Maildir: it must be the run's own.
    anyhow::ensure!(
        args.smtp != Smtp::External,
        "--smtp external: the benchmark checks the e-mails in its own sink's Maildir (orderctl or aiosmtpd)"
    );
    let out = absolute(&args.out_dir)?;
    // `logs/` also holds the logs of what `scripts/bench` started.
    let logs = out.join("logs").join("stack");
    let work = out.join("work");
    for d in [&logs, &work, &out.join("metrics")] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("emptying {}", d.display()))?;
        }
    }
    for d in [&logs, &work, &out.join("metrics")] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let label = label();

    let mut options = StackOptions::deployed(&args.id, logs.clone(), args.smtp);
    options.topic_prefix = Some(std::env::var("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default());
    let stack = Stack::start(options)
        .await
        .context("starting the services")?;
    // Ready is not yet consuming: the load starts once every consumer
    // holds its partitions.
    for svc in Service::ALL {
        stack.assigned_within(svc, args.assign_timeout).await?;
    }
    let mut named = args.processes.clone();
    named.push(format!(
        "smtp-sink={}",
        stack
            .smtp_pid()
            .await
            .context("the SMTP sink is not running")?
    ));
    let mut targets = Vec::new();
    for svc in Service::ALL {
        let pid = stack.pid(svc).await.context("a service is not running")?;
        named.push(format!("{}={pid}", svc.binary()));
        targets.push(format!("{}={}", svc.binary(), port_of(&stack.url(svc))));
    }
    write_json(&work.join("machine.json"), &machine(&label))?;

    eprintln!(
        "==> stack is up; idling {}s before sampling idle RSS",
        args.idle_wait.as_secs_f64()
    );
    // An idle period to measure, not a wait for a condition.
    tokio::time::sleep(args.idle_wait).await;
    procfs::write_snap(&work.join("idle.json"), &named)?;
    std::fs::write(out.join("top-before.log"), top(20).await).context("writing top-before.log")?;

    // `top` every 5 s (which process burns the CPU) and the pipeline's
    // backlog and lag, while the load runs.
    let top_log = out.join("top.log");
    std::fs::write(&top_log, "").context("creating top.log")?;
    let top_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let text = format!(
                "--- {}\n{}",
                chrono::Utc::now().format("%H:%M:%S"),
                top(22).await
            );
            let _ = append(&top_log, &text);
        }
    });
    let pipeline = out.join("pipeline.jsonl");
    std::fs::write(&pipeline, "").context("creating pipeline.jsonl")?;
    let sampler = {
        let targets = targets.clone();
        tokio::spawn(async move { sample::run(&pipeline, &targets, Duration::from_secs(5)).await })
    };

    let admin = orderflow_stack::env::admin_database_url();
    dbstat::write(
        &work.join("db-start.json"),
        &dbstat::snapshot(&admin, &args.id).await?,
    )?;
    procfs::write_snap(&work.join("start.json"), &named)?;
    args.load.order_url = stack.url(Service::Order);
    args.load.inventory_url = stack.url(Service::Inventory);
    args.load.payment_url = stack.url(Service::Payment);
    args.load.out = work.join("load-summary.json");
    eprintln!("==> orderctl load {label}");
    let load = crate::load::run_summary(args.load).await;
    procfs::write_snap(&work.join("end.json"), &named)?;
    top_task.abort();
    sampler.abort();
    let load_ok = load.context("the load failed before writing a summary")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    for t in &targets {
        let (name, port) = t.split_once('=').context("name=port")?;
        let text = match http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => {
                eprintln!("==> WARNING: could not scrape {name}'s /metrics: {e}");
                String::new()
            }
        };
        std::fs::write(out.join("metrics").join(format!("{name}.prom")), text)?;
    }
    let plot = out.join("summary-latency.svg");
    std::fs::rename(work.join("load-summary-latency.svg"), &plot)
        .context("moving the latency plot")?;

    // The invariants, once the outboxes are empty and nothing is violated,
    // or when the quiesce timeout is up.
    settle::check_when_settled(&stack, &work, args.quiesce_timeout).await?;
    drop(stack);
    // The databases' counters once the services are gone, so that every
    // server process has reported its last ones.
    if !dbstat::wait_disconnected(&admin, &args.id, Duration::from_secs(30)).await? {
        eprintln!("==> WARNING: sessions of the run's databases still open after 30 s; their last counters may be missing");
    }
    dbstat::write(
        &work.join("db-end.json"),
        &dbstat::snapshot(&admin, &args.id).await?,
    )?;

    let summary_path = out.join("summary.json");
    let hold = report::run(&report::Files {
        load: work.join("load-summary.json"),
        idle: work.join("idle.json"),
        start: work.join("start.json"),
        end: work.join("end.json"),
        invariants: work.join("invariants.txt"),
        db_start: Some(work.join("db-start.json")),
        db_end: Some(work.join("db-end.json")),
        machine: work.join("machine.json"),
        dir: out.clone(),
        out: summary_path.clone(),
    })?;
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).context("reading summary.json")?)?;
    summary["plot"] = serde_json::json!(plot.display().to_string());
    write_json(&summary_path, &summary)?;
    let run_dir = out.join("runs").join(format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            })
            .collect::<String>()
    ));
    copy_run(&out, &run_dir)?;
    eprintln!(
        "==> summary: {}, plot: {}, logs: {} (copy in {})",
        summary_path.display(),
        plot.display(),
        logs.display(),
        run_dir.display()
    );
    Ok(if !hold {
        eprintln!("==> ERROR: invariants violated (see above)");
        ExitCode::from(1)
    } else if !load_ok {
        eprintln!("==> ERROR: the load reported errors; invariants hold");
        ExitCode::from(LOAD_ERRORS)
    } else {
        eprintln!("==> benchmark finished: invariants hold, no errors");
        ExitCode::SUCCESS
    })
}

/// `path`, absolute (relative to the working directory).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// The load's flags as given, for the summary and the run's directory
/// name.
fn label() -> String {
    let argv: Vec<String> = std::env::args().collect();
    let from = argv
        .iter()
        .position(|a| a == "run")
        .map_or(argv.len(), |i| i + 1);
    load_flags(&argv[from..]).join(" ")
}

/// `args` without the run's own flags (and their values).
fn load_flags(args: &[String]) -> Vec<String> {
    const OWN: [&str; 7] = [
        "--out-dir",
        "--id",
        "--smtp",
        "--idle-wait",
        "--quiesce-timeout",
        "--assign-timeout",
        "--process",
    ];
    let mut out = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
        } else if OWN.contains(&a.as_str()) {
            skip_value = true;
        } else if !OWN.iter().any(|o| a.starts_with(&format!("{o}="))) {
            out.push(a.clone());
        }
    }
    out
}

/// The port of `http://127.0.0.1:<port>`.
fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

fn write_json(path: &Path, v: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Copies what a run is judged by into `run_dir`.
fn copy_run(out: &Path, run_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(run_dir.join("metrics"))
        .with_context(|| format!("creating {}", run_dir.display()))?;
    for name in [
        "summary.json",
        "summary-latency.svg",
        "top.log",
        "top-before.log",
        "pipeline.jsonl",
    ] {
        std::fs::copy(out.join(name), run_dir.join(name))
            .with_context(|| format!("copying {name} to {}", run_dir.display()))?;
    }
    for entry in std::fs::read_dir(out.join("metrics"))? {
        let entry = entry?;
        std::fs::copy(
            entry.path(),
            run_dir.join("metrics").join(entry.file_name()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, String> {
        crate::parse_flags("run", argv)
    }

    #[test]
    fn the_load_flags_pass_through_and_bad_ones_are_refused() {
        let a = parse(&[
            "--rate",
            "200",
            "--duration",
            "30s",
            "--process",
            "broker=42",
        ])
        .expect("valid");
        assert_eq!(a.load.rate, Some(200));
        assert_eq!(a.load.duration, Duration::from_secs(30));
        assert_eq!(a.processes, ["broker=42"]);
        assert_eq!(a.smtp, Smtp::Orderctl);
        let e = parse(&["--process", "broker"]).expect_err("no pid");
        assert!(e.contains("is not name=pid"), "{e}");
        let e = parse(&["--process", "broker=0"]).expect_err("pid 0");
        assert!(e.contains("is not name=pid"), "{e}");
        let e = parse(&["--smtp", "postfix"]).expect_err("unknown sink");
        assert!(e.contains("orderctl, aiosmtpd or external"), "{e}");
        let e = parse(&["--id", "prod"]).expect_err("not a bench id");
        assert!(e.contains("`bench` or `bench_`"), "{e}");
        assert_eq!(
            parse(&["--id", "bench_e2e_1"]).expect("valid").id,
            "bench_e2e_1"
        );
        let e = parse(&["--quiesce-timeout", "0s"]).expect_err("zero");
        assert!(e.contains("greater than zero"), "{e}");
    }

    #[test]
    fn the_label_is_the_load_flags() {
        let argv: Vec<String> = [
            "--out-dir",
            "/tmp/b",
            "--smtp=orderctl",
            "--process",
            "broker=1",
            "--rate",
            "200",
            "--duration",
            "30s",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(load_flags(&argv), ["--rate", "200", "--duration", "30s"]);
    }

    #[test]
    fn the_machine_is_described() {
        let m = machine("--rate 1");
        assert!(m["nproc"].as_u64().is_some_and(|n| n >= 1), "{m}");
        assert_eq!(m["args"], "--rate 1");
        assert!(m["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{m}");
    }
}

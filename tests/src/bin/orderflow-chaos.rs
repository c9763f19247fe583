//! `orderflow-chaos`: runs a fault campaign (see `orderflow_e2e::chaos`)
//! and prints its table; exits 1 when an invariant was violated, 2 when
//! the campaign itself could not run. `scripts/chaos` starts what it needs
//! and runs it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use orderflow_e2e::chaos::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "orderflow-chaos",
    about = "Runs orders, cancels and dispatches against a stack of real processes while \
             injecting faults, then checks that no promise of the saga was broken."
)]
struct Args {
    /// Seed of every random choice; the same seed injects the same faults
    /// in the same order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long orders are placed and faults injected (e.g. 90s, 10m); at
    /// least one round of every fault kind runs however short it is.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Orders per second.
    #[arg(long, default_value_t = 3.0)]
    rate: f64,
    /// The saga deadline (`ORDER_SAGA_TIMEOUT`); the SMTP outage outlasts it.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    saga_timeout: Duration,
    /// How long the sagas may take to settle after the last fault.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    settle: Duration,
}

/// `90s`, `10m`, `1500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("{s:?} has no unit (ms, s or m)"))?;
    let n: u64 = n.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?}: the unit must be ms, s or m")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.rate <= 200.0) {
        eprintln!("error: --rate must be in (0, 200], got {}", args.rate);
        return ExitCode::from(2);
    }
    let opts = Options {
        seed: args.seed,
        duration: args.duration,
        rate: args.rate,
        saga_timeout: args.saga_timeout,
        settle: args.settle,
    };
    match chaos::run(&opts).await {
        Ok(report) => {
            println!("{}", report.table);
            if report.violations() == 0 {
                println!("all invariants held");
                ExitCode::SUCCESS
            } else {
                println!("{} violations", report.violations());
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: the campaign could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}

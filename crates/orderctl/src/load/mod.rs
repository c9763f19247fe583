//! `orderctl load`: a load generator and saga benchmark.
//!
//! 1. Stocks `--skus` SKUs through `PUT {inventory}/inventory/{sku}` and
//!    waits until `GET {order}/catalog/{sku}` knows each of them.
//! 2. Sends `POST {order}/orders` open-loop at `--rate` orders/s (a token
//!    schedule: order `i` is due at `start + i/rate`; late wake-ups are
//!    followed by a catch-up burst) or closed-loop with `--concurrency`
//!    senders, for `--duration`, with a progress bar.
//! 3. Waits (up to `--settle-timeout`) until every accepted order is
//!    terminal, listing only the still-open orders of the run
//!    (`GET /orders?customerId=&status=` for the four non-terminal
//!    statuses), then reads every order of the run once through the same
//!    list endpoint (100 per page).
//! 4. Fetches the timelines of an evenly spread sample of SHIPPED orders
//!    for the per-hop latencies.
//! 5. Prints and writes the summary (JSON) and a latency plot (SVG).

mod driver;
pub mod schedule;
pub mod stats;
pub mod svg;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use schedule::{parse_positive_duration, parse_share};

/// Options of `orderctl load`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Order service base URL.
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:8080")]
    pub order_url: String,
    /// Inventory service base URL (used to stock the SKUs).
    #[arg(long, env = "INVENTORY_URL", default_value = "http://127.0.0.1:8082")]
    pub inventory_url: String,
    /// Payment service base URL (used to register the load's cards).
    #[arg(long, env = "PAYMENT_URL", default_value = "http://127.0.0.1:8083")]
    pub payment_url: String,
    /// Open loop: send this many orders per second, whatever the answers
    /// take (default 100 when --concurrency is not given).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000), conflicts_with = "concurrency")]
    pub rate: Option<u32>,
    /// Closed loop: this many senders, each sending its next order as soon
    /// as the previous one is answered.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: Option<u32>,
    /// How long to send (e.g. 60s, 2m, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Number of SKUs; each order picks its lines' SKUs at random.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub skus: u32,
    /// Units stocked per SKU before the run (`PUT /inventory/{sku}`).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1..=2_000_000_000))]
    pub stock: i64,
    /// SKU names are `<prefix><n>`; default `LOAD-<run id>-`.
    #[arg(long, value_parser = parse_sku_prefix)]
    pub sku_prefix: Option<String>,
    /// Share of orders paid with `tok_chargeDeclined` (0..1, or a percentage
    /// like 5%); the rest use `tok_visa`.
    #[arg(long, default_value = "0.05", value_parser = parse_share)]
    pub decline_share: f64,
    /// Lines per order are 1..=N.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_lines: u32,
    /// Quantity per line is 1..=N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_quantity: u32,
    /// Open loop: at most this many requests in flight; when full, sending
    /// waits (and catches up afterwards).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Timeout of one HTTP request.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// Bearer token of every request (roles service and operator: it
    /// orders for many customers and stocks SKUs); by default one is signed
    /// with --key-file.
    #[arg(long, env = "ORDERFLOW_TOKEN")]
    pub token: Option<String>,
    #[command(flatten)]
    pub key: crate::token::KeyArgs,
    /// How long to wait after sending for every accepted order to become
    /// terminal (SHIPPED, DELIVERED or CANCELLED).
    #[arg(long, default_value = "120s", value_parser = parse_positive_duration)]
    pub settle_timeout: Duration,
    /// Timelines to fetch (evenly spread over the SHIPPED orders) for the
    /// per-hop latencies; 0 skips them.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub timeline_sample: u32,
    /// Seed of the SKU / quantity choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the JSON summary; the SVG plot goes next to it
    /// (`<stem>-latency.svg`).
    #[arg(long, default_value = "target/bench/summary.json")]
    pub out: PathBuf,
    /// No progress bar (plain progress lines every 10 s instead).
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_sku_prefix(s: &str) -> Result<String, String> {
    if s.len() > 40 {
        return Err("at most 40 characters (SKUs are at most 64)".to_owned());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may only contain letters, digits, '.', '_' and '-'".to_owned());
    }
    Ok(s.to_owned())
}

/// The plot path for a summary path: `dir/<stem>-latency.svg`.
pub fn plot_path(out: &std::path::Path) -> PathBuf {
    let stem = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("summary");
    out.with_file_name(format!("{stem}-latency.svg"))
}

/// Runs the load; exit 0 when every order was accepted and ended as
/// expected, 1 otherwise.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    Ok(if run_summary(args).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs the load, prints and writes its summary and plot: whether every
/// order was accepted and ended as expected.
pub async fn run_summary(args: Args) -> anyhow::Result<bool> {
    let summary = driver::run(&args).await?;
    let text = driver::render_text(&summary);
    println!("{text}");
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("summary written to {}", args.out.display());
    if let Some(plot) = &summary.plot {
        println!("latency plot written to {plot}");
    }
    Ok(summary.errors.total == 0 && summary.settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, String> {
        crate::parse_flags("load", argv)
    }

    #[test]
    fn defaults_and_valid_flags() {
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.rate, None);
        assert_eq!(a.duration, Duration::from_secs(60));
        assert_eq!(a.skus, 50);
        assert_eq!(a.decline_share, 0.05);
        let a = parse(&[
            "--rate",
            "500",
            "--duration",
            "2m",
            "--decline-share",
            "10%",
        ])
        .expect("valid");
        assert_eq!(a.rate, Some(500));
        assert_eq!(a.duration, Duration::from_secs(120));
        assert_eq!(a.decline_share, 0.1);
    }

    #[test]
    fn bad_flags_get_clear_errors() {
        let e = parse(&["--rate", "0"]).expect_err("rate 0");
        assert!(e.contains("--rate") && e.contains("1..=100000"), "{e}");
        let e = parse(&["--rate", "fast"]).expect_err("rate text");
        assert!(e.contains("invalid value 'fast'"), "{e}");
        let e = parse(&["--rate", "10", "--concurrency", "4"]).expect_err("both");
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse(&["--duration", "0s"]).expect_err("zero duration");
        assert!(e.contains("greater than zero"), "{e}");
        let e = parse(&["--duration", "10 parsecs"]).expect_err("unit");
        assert!(e.contains("unknown time unit \"parsecs\""), "{e}");
        let e = parse(&["--decline-share", "1.5"]).expect_err("share");
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = parse(&["--skus", "0"]).expect_err("skus");
        assert!(e.contains("--skus"), "{e}");
        let e = parse(&["--sku-prefix", "a b"]).expect_err("prefix");
        assert!(e.contains("may only contain"), "{e}");
        let e = parse(&["--concurrency", "100000"]).expect_err("concurrency");
        assert!(e.contains("1..=10000"), "{e}");
    }

    #[test]
    fn plot_goes_next_to_the_summary() {
        assert_eq!(
            plot_path(std::path::Path::new("target/bench/summary.json")),
            PathBuf::from("target/bench/summary-latency.svg")
        );
        assert_eq!(
            plot_path(std::path::Path::new("out.json")),
            PathBuf::from("out-latency.svg")
        );
    }
}

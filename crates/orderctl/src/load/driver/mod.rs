//! The I/O side of `orderctl load`: sending (here), stocking, settling and
//! timelines (`reads`), the response types (`view`) and the text summary
//! (`render`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::schedule::{due_orders, is_declined, offset, planned_orders, Rng};
use super::stats::{
    by_send_time, hop_names, hops, percentiles, round1, Errors, LoaderUsage, RunConfig, Summary,
    SAGA_LATENCY_DEFINITION,
};
use super::svg::{self, Point};
use super::{plot_path, Args};

mod reads;
mod render;
mod send;
mod view;

use reads::{loader_usage, register_cards, settle, stock_skus, timeline_hops};
pub(super) use render::render_text;
use send::{progress_bar, send_phase, BodyTemplate, Record, Shared};
use view::*;

/// Statuses that end the automatic saga.
const TERMINAL: [Status; 3] = [Status::Shipped, Status::Delivered, Status::Cancelled];
/// The payment service's default PAYMENT_MAX_AMOUNT: larger totals are
/// declined even with `tok_visa`.
const DEFAULT_MAX_AMOUNT: i64 = 1_000_000;
const PAGE: usize = 100;

fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn parse_ts_us(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Whether an order ended as its payment method says it should.
fn expected_outcome(rec: &Record, view: &OrderJson) -> bool {
    let declined = rec.declined || rec.total > DEFAULT_MAX_AMOUNT;
    match view.status {
        Status::Shipped | Status::Delivered => !rec.declined,
        Status::Cancelled => declined && view.reason_code.as_deref() == Some("PAYMENT_DECLINED"),
        _ => false,
    }
}

/// Runs the whole load and returns its summary (also writing the plot).
pub(super) async fn run(args: &Args) -> anyhow::Result<Summary> {
    let run_id = format!("{:x}", unix_now_us() / 1000 % 0xFFFF_FFFF);
    let order_url = args.order_url.trim_end_matches('/').to_owned();
    let args = &Args {
        order_url: order_url.clone(),
        ..args.clone()
    };
    let mut tpl = BodyTemplate {
        customer_id: format!("load-{run_id}"),
        sku_prefix: args
            .sku_prefix
            .clone()
            .unwrap_or_else(|| format!("LOAD-{run_id}-")),
        skus: args.skus,
        max_lines: args.max_lines,
        max_quantity: args.max_quantity,
        decline_share: args.decline_share,
        seed: args.seed,
        visa_method: String::new(),
        declined_method: String::new(),
    };
    if i64::from(args.max_lines) * i64::from(args.max_quantity) * 999 > DEFAULT_MAX_AMOUNT {
        eprintln!(
            "note: orders may exceed {DEFAULT_MAX_AMOUNT} minor units; the payment service declines \
             those (PAYMENT_MAX_AMOUNT) even with tok_visa"
        );
    }
    let token = match &args.token {
        Some(t) => t.clone(),
        None => args.key.mint(
            "orderctl-load",
            &[
                orderflow_service::Role::Service,
                orderflow_service::Role::Operator,
            ],
            Duration::from_secs(86_400),
        )?,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .context("the token is not a valid header value")?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(args.request_timeout)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;

    eprintln!(
        "stocking {} SKUs ({}1..{}) with {} units each",
        tpl.skus, tpl.sku_prefix, tpl.skus, args.stock
    );
    stock_skus(args, &client, &tpl).await?;
    (tpl.visa_method, tpl.declined_method) =
        register_cards(args, &client, &tpl.customer_id).await?;

    let (mode, what) = match args.concurrency {
        Some(c) => ("concurrency", format!("{c} concurrent senders")),
        None => ("rate", format!("{} orders/s", args.rate.unwrap_or(100))),
    };
    eprintln!(
        "sending {what} for {:?} (customer {}, {:.1}% declined)",
        args.duration,
        tpl.customer_id,
        args.decline_share * 100.0
    );
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let shared = Arc::new(Shared {
        client: client.clone(),
        orders_url: format!("{order_url}/orders"),
        sent: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        records: Mutex::new(Vec::new()),
        body: tpl.clone(),
    });
    send_phase(args, &shared).await?;
    let mut records = std::mem::take(&mut *shared.records.lock().expect("records lock"));
    records.sort_by_key(|r| r.seq);
    let accepted_ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.result.as_ref().ok().cloned())
        .collect();
    let accepted = accepted_ids.len();
    eprintln!(
        "sent {}, accepted {accepted}; waiting up to {:?} for every order to finish its saga",
        records.len(),
        args.settle_timeout
    );
    let (orders, settled) = settle(args, &client, &tpl.customer_id, &accepted_ids).await?;

    // ---- evaluate
    let mut errors = Errors::default();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut post = Vec::new();
    let mut post_sched = Vec::new();
    let mut saga = Vec::new();
    let mut cancel = Vec::new();
    let mut points = Vec::new();
    let mut shipped: Vec<(&Record, &str, i64)> = Vec::new();
    let first_sent = records.iter().map(|r| r.sent_unix_us).min().unwrap_or(0);
    let last_sent = records.iter().map(|r| r.sent_unix_us).max().unwrap_or(0);
    let mut last_terminal = first_sent;
    let mut completed = 0u64;
    for r in &records {
        post.push(r.latency_ms);
        if let Some(s) = r.from_schedule_ms {
            post_sched.push(s);
        }
        let id = match &r.result {
            Ok(id) => id,
            Err(kind) => {
                errors.add(kind);
                continue;
            }
        };
        let Some(view) = orders.get(id) else {
            errors.add("missing_from_order_list");
            continue;
        };
        let key = match &view.reason_code {
            Some(code) if view.status == Status::Cancelled => format!("CANCELLED/{code}"),
            _ => view.status.to_string(),
        };
        *outcomes.entry(key.clone()).or_default() += 1;
        if !TERMINAL.contains(&view.status) {
            errors.add(&format!("not_terminal_{}", view.status));
            continue;
        }
        if !expected_outcome(r, view) {
            errors.add(&format!(
                "unexpected_outcome_{}{}",
                key.replace('/', "_"),
                if r.declined {
                    "_for_declined_token"
                } else {
                    ""
                }
            ));
        }
        let Some(updated) = parse_ts_us(&view.updated_at) else {
            errors.add("bad_updated_at");
            continue;
        };
        completed += 1;
        last_terminal = last_terminal.max(updated);
        let latency = (updated - r.sent_unix_us) as f64 / 1000.0;
        let cancelled = view.status == Status::Cancelled;
        if view.status == Status::Shipped {
            saga.push(latency);
            shipped.push((r, id.as_str(), updated));
        } else if cancelled {
            cancel.push(latency);
        }
        points.push(Point {
            at_s: (r.sent_unix_us - first_sent) as f64 / 1e6,
            latency_ms: latency,
            cancelled,
        });
    }

    let (hop_samples, mut shipped_vs_updated, timeline_sample) = if args.timeline_sample > 0 {
        eprintln!(
            "fetching {} timelines for the hop latencies",
            (args.timeline_sample as usize).min(shipped.len())
        );
        timeline_hops(args, &client, &shipped).await
    } else {
        (BTreeMap::new(), Vec::new(), 0)
    };
    let hop_latency_ms = hop_samples
        .into_iter()
        .filter_map(|(k, mut v)| Some((k, percentiles(&mut v)?)))
        .collect();

    let send_duration_s = args
        .duration
        .as_secs_f64()
        .max((last_sent - first_sent) as f64 / 1e6);
    let window_s = (last_terminal - first_sent) as f64 / 1e6;
    let saga_by_send_time = by_send_time(
        &points
            .iter()
            .filter(|p| !p.cancelled)
            .map(|p| (p.at_s, p.latency_ms))
            .collect::<Vec<_>>(),
        args.duration.as_secs_f64(),
        6,
    );
    let saga_p = percentiles(&mut saga);
    let title = format!(
        "orderctl load: {what} for {:.0} s, {} orders, saga p50 {} / p99 {} ms",
        args.duration.as_secs_f64(),
        records.len(),
        saga_p.map(|p| p.p50).unwrap_or(f64::NAN),
        saga_p.map(|p| p.p99).unwrap_or(f64::NAN),
    );
    let plot = plot_path(&args.out);
    if let Some(dir) = plot.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&plot, svg::render(&points, saga_p.as_ref(), &title))
        .with_context(|| format!("writing {}", plot.display()))?;

    Ok(Summary {
        schema: "orderflow-load-summary/1",
        started_at,
        config: RunConfig {
            mode,
            rate: if args.concurrency.is_none() {
                Some(args.rate.unwrap_or(100))
            } else {
                None
            },
            concurrency: args.concurrency,
            duration_s: args.duration.as_secs_f64(),
            skus: args.skus,
            stock_per_sku: args.stock,
            sku_prefix: tpl.sku_prefix.clone(),
            customer_id: tpl.customer_id.clone(),
            decline_share: args.decline_share,
            max_lines: args.max_lines,
            max_quantity: args.max_quantity,
            order_url,
            inventory_url: args.inventory_url.clone(),
        },
        sent: records.len() as u64,
        accepted: accepted as u64,
        send_duration_s: round1(send_duration_s),
        accepted_per_sec: round1(accepted as f64 / send_duration_s),
        completed,
        orders_per_sec: if window_s > 0.0 {
            round1(completed as f64 / window_s)
        } else {
            0.0
        },
        drain_s: round1(((last_terminal - last_sent) as f64 / 1e6).max(0.0)),
        settled,
        outcomes,
        post_latency_ms: percentiles(&mut post),
        post_latency_from_schedule_ms: percentiles(&mut post_sched),
        saga_latency_ms: saga_p,
        saga_latency_definition: SAGA_LATENCY_DEFINITION,
        saga_latency_by_send_time_ms: saga_by_send_time,
        cancel_latency_ms: percentiles(&mut cancel),
        hop_latency_ms,
        hop_order: hop_names(),
        timeline_sample,
        shipped_event_minus_updated_at_ms: percentiles(&mut shipped_vs_updated),
        errors,
        loader: loader_usage(),
        plot: Some(plot.display().to_string()),
    })
}

#[cfg(test)]
mod tests;

//! The I/O side of `orderctl load`: stocking, sending, settling, timelines.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
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

/// Statuses that end the automatic saga.
const TERMINAL: [&str; 3] = ["SHIPPED", "DELIVERED", "CANCELLED"];
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

/// One `POST /orders`.
#[derive(Debug, Clone)]
struct Record {
    seq: u64,
    declined: bool,
    total: i64,
    sent_unix_us: i64,
    latency_ms: f64,
    from_schedule_ms: Option<f64>,
    /// The order id, or the error kind.
    result: Result<String, String>,
}

/// An order as the list endpoint shows it (the fields we need).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderView {
    order_id: String,
    status: String,
    reason_code: Option<String>,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPage {
    orders: Vec<OrderView>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    order_id: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineEvent {
    event_type: String,
    timestamp: String,
}

#[derive(Debug, Deserialize)]
struct Timeline {
    events: Vec<TimelineEvent>,
}

/// What every sender shares.
struct Shared {
    client: reqwest::Client,
    orders_url: String,
    sent: AtomicU64,
    accepted: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    records: Mutex<Vec<Record>>,
    body: BodyTemplate,
}

/// What an order body is made of.
#[derive(Debug, Clone)]
struct BodyTemplate {
    customer_id: String,
    sku_prefix: String,
    skus: u32,
    max_lines: u32,
    max_quantity: u32,
    decline_share: f64,
    seed: u64,
}

impl BodyTemplate {
    fn sku(&self, n: u32) -> String {
        format!("{}{}", self.sku_prefix, n + 1)
    }

    /// The catalog price of SKU `n` (minor units, EUR), set when the SKUs
    /// are stocked and sent as each line's `unitPrice`: 100 to 999.
    fn price(n: u32) -> i64 {
        100 + i64::from(n.wrapping_mul(37) % 900)
    }

    /// The body of order `seq` (deterministic in seed and seq), whether it
    /// is meant to be declined, and its total.
    fn build(&self, seq: u64) -> (serde_json::Value, bool, i64) {
        let mut rng = Rng::new(self.seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next_u64();
        let lines = (1 + rng.below(u64::from(self.max_lines))).min(u64::from(self.skus));
        let mut chosen: Vec<u32> = Vec::new();
        while (chosen.len() as u64) < lines {
            let n = rng.below(u64::from(self.skus)) as u32;
            if !chosen.contains(&n) {
                chosen.push(n);
            }
        }
        let mut total = 0i64;
        let items: Vec<serde_json::Value> = chosen
            .iter()
            .map(|&n| {
                let quantity = 1 + rng.below(u64::from(self.max_quantity)) as i64;
                let unit_price = BodyTemplate::price(n);
                total += quantity * unit_price;
                json!({"sku": self.sku(n), "quantity": quantity, "unitPrice": unit_price})
            })
            .collect();
        let declined = is_declined(seq, self.decline_share);
        let body = json!({
            "customerId": self.customer_id,
            "email": format!("load+{seq}@example.com"),
            "currency": "EUR",
            "items": items,
            "shippingAddress": {"name": "Load Test", "line1": "Bench St 1", "city": "Berlin",
                                "postalCode": "10115", "country": "DE"},
            "paymentToken": if declined { "tok_chargeDeclined" } else { "tok_visa" },
        });
        (body, declined, total)
    }
}

fn classify(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".to_owned()
    } else if e.is_connect() {
        "connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "bad_response".to_owned()
    } else {
        "request".to_owned()
    }
}

async fn send_one(shared: &Shared, seq: u64, scheduled: Option<Instant>) -> Record {
    let (body, declined, total) = shared.body.build(seq);
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    shared.sent.fetch_add(1, Ordering::Relaxed);
    let sent_unix_us = unix_now_us();
    let t0 = Instant::now();
    let result = match shared
        .client
        .post(&shared.orders_url)
        .json(&body)
        .send()
        .await
    {
        Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
            match resp.json::<Accepted>().await {
                Ok(a) => Ok(a.order_id),
                Err(e) => Err(classify(&e)),
            }
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.json::<ErrorBody>().await {
                Ok(b) => Err(format!("http_{status}_{}", b.code)),
                Err(_) => Err(format!("http_{status}")),
            }
        }
        Err(e) => Err(classify(&e)),
    };
    let done = Instant::now();
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    match &result {
        Ok(_) => shared.accepted.fetch_add(1, Ordering::Relaxed),
        Err(_) => shared.errors.fetch_add(1, Ordering::Relaxed),
    };
    Record {
        seq,
        declined,
        total,
        sent_unix_us,
        latency_ms: (done - t0).as_secs_f64() * 1000.0,
        from_schedule_ms: scheduled
            .map(|s| done.saturating_duration_since(s).as_secs_f64() * 1000.0),
        result,
    }
}

fn push(shared: &Shared, r: Record) {
    shared.records.lock().expect("records lock").push(r);
}

fn progress_bar(len: u64, args: &Args, template: &str) -> ProgressBar {
    let target = if args.no_progress || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr_with_hz(4)
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// Updates the bar (or prints a line every 10 s without a terminal) until
/// aborted.
fn spawn_send_progress(
    shared: Arc<Shared>,
    pb: ProgressBar,
    start: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
        let mut last_line = Instant::now();
        loop {
            tick.tick().await;
            let now = Instant::now();
            let accepted = shared.accepted.load(Ordering::Relaxed);
            window.push_back((now, accepted));
            while window.len() > 5 {
                window.pop_front();
            }
            let rate = match (window.front(), window.back()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64(),
                _ => 0.0,
            };
            let msg = format!(
                "sent {} accepted {} errors {} rate {:.0}/s in-flight {}",
                shared.sent.load(Ordering::Relaxed),
                accepted,
                shared.errors.load(Ordering::Relaxed),
                rate,
                shared.in_flight.load(Ordering::Relaxed)
            );
            pb.set_position((now - start).as_secs());
            if pb.is_hidden() {
                if now - last_line >= Duration::from_secs(10) {
                    eprintln!("[{:>4}s] {msg}", (now - start).as_secs());
                    last_line = now;
                }
            } else {
                pb.set_message(msg);
            }
        }
    })
}

async fn send_phase(args: &Args, shared: &Arc<Shared>) -> anyhow::Result<()> {
    let secs = args.duration.as_secs_f64().ceil() as u64;
    let pb = progress_bar(secs, args, "sending [{bar:30}] {pos:>3}/{len}s  {msg}");
    let start = Instant::now();
    let reporter = spawn_send_progress(shared.clone(), pb.clone(), start);
    match args.concurrency {
        Some(n) => {
            let end = start + args.duration;
            let next = Arc::new(AtomicU64::new(0));
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..n {
                let shared = shared.clone();
                let next = next.clone();
                workers.spawn(async move {
                    while Instant::now() < end {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        let r = send_one(&shared, seq, None).await;
                        push(&shared, r);
                    }
                });
            }
            while let Some(r) = workers.join_next().await {
                r.context("a sender task failed")?;
            }
        }
        None => {
            let rate = args.rate.unwrap_or(100);
            let planned = planned_orders(rate, args.duration);
            let slots = Arc::new(Semaphore::new(args.max_in_flight as usize));
            let mut next = 0u64;
            while next < planned {
                tokio::time::sleep_until(start + offset(next, rate)).await;
                let due = due_orders(start.elapsed(), rate, planned);
                while next < due {
                    let permit = slots
                        .clone()
                        .acquire_owned()
                        .await
                        .context("in-flight semaphore closed")?;
                    let shared = shared.clone();
                    let seq = next;
                    let scheduled = start + offset(seq, rate);
                    tokio::spawn(async move {
                        let r = send_one(&shared, seq, Some(scheduled)).await;
                        push(&shared, r);
                        drop(permit);
                    });
                    next += 1;
                }
            }
            // Every permit back = every request answered.
            let _all = slots
                .acquire_many(args.max_in_flight)
                .await
                .context("in-flight semaphore closed")?;
        }
    }
    reporter.abort();
    pb.finish_and_clear();
    Ok(())
}

async fn get_with_retry<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let mut last = None;
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => {
                return resp
                    .json::<T>()
                    .await
                    .with_context(|| format!("decoding GET {url}"))
            }
            Ok(resp) => last = Some(anyhow::anyhow!("GET {url}: HTTP {}", resp.status())),
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("GET {url}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("GET {url} failed")))
}

/// Every order of the run's customer, paging with the list endpoint's
/// cursor.
async fn list_orders(
    client: &reqwest::Client,
    order_url: &str,
    customer_id: &str,
) -> anyhow::Result<Vec<OrderView>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{order_url}/orders?customerId={customer_id}&limit={PAGE}");
        if let Some(c) = &cursor {
            let _ = write!(url, "&cursor={c}");
        }
        let page: OrderPage = get_with_retry(client, &url).await?;
        out.extend(page.orders);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Waits until every accepted order is terminal, cheaply: while many are
/// open it probes ~20 of them (evenly spread, by id: primary-key lookups)
/// per second and reads the whole list (`GET /orders?customerId=`, 100 per
/// page) only when every probe came back terminal; the last few hundred are
/// probed one by one. Returns every accepted order's last known state and
/// whether all were terminal before the deadline.
async fn settle(
    args: &Args,
    client: &reqwest::Client,
    customer_id: &str,
    accepted_ids: &[String],
) -> anyhow::Result<(HashMap<String, OrderView>, bool)> {
    const PROBES: usize = 20;
    const PROBE_ALL_BELOW: usize = 200;
    let accepted = accepted_ids.len();
    let deadline = Instant::now() + args.settle_timeout;
    let pb = progress_bar(
        accepted as u64,
        args,
        "settling [{bar:30}] {pos}/{len} terminal  {msg}",
    );
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut known: HashMap<String, OrderView> = HashMap::new();
    let mut pending: Vec<String> = accepted_ids.to_vec();
    let is_terminal = |v: &OrderView| TERMINAL.contains(&v.status.as_str());
    loop {
        if pending.is_empty() {
            pb.finish_and_clear();
            return Ok((known, true));
        }
        if Instant::now() >= deadline {
            // Last look at everything, for the report.
            let all = list_orders(client, &args.order_url, customer_id)
                .await
                .context("reading the run's orders")?;
            for o in all {
                known.insert(o.order_id.clone(), o);
            }
            pb.finish_and_clear();
            return Ok((known, false));
        }
        let probe: Vec<usize> = if pending.len() <= PROBE_ALL_BELOW {
            (0..pending.len()).collect()
        } else {
            (0..PROBES)
                .map(|i| i * (pending.len() - 1) / (PROBES - 1))
                .collect()
        };
        let probed: Vec<Option<OrderView>> = stream::iter(probe.iter().map(|&i| &pending[i]))
            .map(|id| async move {
                let url = format!("{}/orders/{id}", args.order_url);
                get_with_retry::<OrderView>(client, &url).await.ok()
            })
            .buffered(8)
            .collect()
            .await;
        let open_probes = probed
            .iter()
            .filter(|v| !v.as_ref().is_some_and(&is_terminal))
            .count();
        for v in probed.into_iter().flatten() {
            if is_terminal(&v) {
                known.insert(v.order_id.clone(), v);
            }
        }
        if open_probes == 0 && pending.len() > PROBE_ALL_BELOW {
            // Looks done: confirm with one pass over the list.
            let all = list_orders(client, &args.order_url, customer_id)
                .await
                .context("reading the run's orders")?;
            for o in all {
                if is_terminal(&o) {
                    known.insert(o.order_id.clone(), o);
                }
            }
        }
        pending.retain(|id| !known.contains_key(id));
        let est_open = if probe.is_empty() {
            0
        } else {
            pending.len() * open_probes / probe.len()
        };
        pb.set_position((accepted - pending.len()) as u64);
        pb.set_message(format!(
            "~{est_open} open, {:.0}s left",
            deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        ));
        if pb.is_hidden() && last_line.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "[settle {:>4}s] ~{est_open} of {accepted} orders still open",
                started.elapsed().as_secs()
            );
            last_line = Instant::now();
        }
        if open_probes > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn stock_skus(
    args: &Args,
    client: &reqwest::Client,
    tpl: &BodyTemplate,
) -> anyhow::Result<()> {
    let skus: Vec<(String, i64)> = (0..tpl.skus)
        .map(|n| (tpl.sku(n), BodyTemplate::price(n)))
        .collect();
    let inventory_url = args.inventory_url.trim_end_matches('/');
    let results: Vec<anyhow::Result<()>> = stream::iter(skus.iter())
        .map(|(sku, price)| async move {
            let url = format!("{inventory_url}/inventory/{sku}");
            let resp = client
                .put(&url)
                .json(&json!({"available": args.stock, "price": price, "currency": "EUR"}))
                .send()
                .await
                .with_context(|| format!("PUT {url}"))?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                bail!("PUT {url}: HTTP {status}: {body}");
            }
            Ok(())
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    // The order service learns SKUs from InventoryAdjusted events.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = skus.into_iter().map(|(sku, _)| sku).collect();
    while !pending.is_empty() {
        let known: Vec<bool> = stream::iter(pending.iter())
            .map(|sku| async move {
                let url = format!("{}/catalog/{sku}", args.order_url);
                matches!(client.get(&url).send().await, Ok(r) if r.status().is_success())
            })
            .buffered(16)
            .collect()
            .await;
        let mut i = 0;
        pending.retain(|_| {
            i += 1;
            !known[i - 1]
        });
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "the order service did not learn {} SKUs within 60 s (e.g. {}); is the inventory \
                 service's relay publishing InventoryAdjusted?",
                pending.len(),
                pending[0]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Send time, updatedAt and the `(eventType, unix µs)` timeline of one order.
type SampledTimeline = (i64, i64, Vec<(String, i64)>);

/// Per-hop latencies from the timelines of up to `n` evenly spread orders.
async fn timeline_hops(
    args: &Args,
    client: &reqwest::Client,
    shipped: &[(&Record, &str, i64)],
) -> (BTreeMap<String, Vec<f64>>, Vec<f64>, usize) {
    let n = (args.timeline_sample as usize).min(shipped.len());
    let sample: Vec<&(&Record, &str, i64)> =
        (0..n).map(|i| &shipped[i * shipped.len() / n]).collect();
    let fetched: Vec<Option<SampledTimeline>> = stream::iter(sample)
        .map(|&(rec, id, updated)| async move {
            let url = format!("{}/orders/{id}/timeline", args.order_url);
            let t: Timeline = get_with_retry(client, &url).await.ok()?;
            let events = t
                .events
                .into_iter()
                .filter_map(|e| Some((e.event_type, parse_ts_us(&e.timestamp)?)))
                .collect();
            Some((rec.sent_unix_us, updated, events))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let names = hop_names();
    let mut by_hop: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut shipped_vs_updated = Vec::new();
    let mut count = 0;
    for (sent, updated, events) in fetched.into_iter().flatten() {
        count += 1;
        for (name, v) in names.iter().zip(hops(sent, &events)) {
            if let Some(v) = v {
                by_hop.entry(name.clone()).or_default().push(v);
            }
        }
        if let Some((_, ts)) = events.iter().find(|(t, _)| t == "OrderShipped") {
            shipped_vs_updated.push((ts - updated) as f64 / 1000.0);
        }
    }
    (by_hop, shipped_vs_updated, count)
}

fn loader_usage() -> LoaderUsage {
    let cpu_s = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are
            // fields 14 and 15 (in USER_HZ ticks, 100 on Linux).
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(round1(ticks / 100.0))
        });
    let peak_rss_mib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(round1(kib / 1024.0))
        });
    LoaderUsage {
        cpu_s,
        peak_rss_mib,
    }
}

/// Whether an order ended as its payment token says it should.
fn expected_outcome(rec: &Record, view: &OrderView) -> bool {
    let declined = rec.declined || rec.total > DEFAULT_MAX_AMOUNT;
    match view.status.as_str() {
        "SHIPPED" | "DELIVERED" => !rec.declined,
        "CANCELLED" => declined && view.reason_code.as_deref() == Some("PAYMENT_DECLINED"),
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
    let tpl = BodyTemplate {
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
            Some(code) if view.status == "CANCELLED" => format!("CANCELLED/{code}"),
            _ => view.status.clone(),
        };
        *outcomes.entry(key.clone()).or_default() += 1;
        if !TERMINAL.contains(&view.status.as_str()) {
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
        let cancelled = view.status == "CANCELLED";
        if view.status == "SHIPPED" {
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

/// The human-readable summary.
pub(super) fn render_text(s: &Summary) -> String {
    let mut out = String::new();
    let c = &s.config;
    let what = match (c.rate, c.concurrency) {
        (_, Some(n)) => format!("{n} concurrent senders"),
        (Some(r), None) => format!("{r} orders/s"),
        (None, None) => "?".to_owned(),
    };
    let _ = writeln!(
        out,
        "\n== orderctl load: {what} for {} s, {} SKUs, {:.1}% declined",
        c.duration_s,
        c.skus,
        c.decline_share * 100.0
    );
    let _ = writeln!(
        out,
        "sent {}  accepted {} ({}/s)  completed {}  -> {} orders/s completed (drain {} s){}",
        s.sent,
        s.accepted,
        s.accepted_per_sec,
        s.completed,
        s.orders_per_sec,
        s.drain_s,
        if s.settled { "" } else { "  NOT SETTLED" }
    );
    let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "outcomes: {}", outcomes.join(", "));
    let line = |out: &mut String, name: &str, p: &Option<super::stats::Percentiles>| {
        let _ = match p {
            Some(p) => writeln!(
                out,
                "{name:<38} p50 {:>8}  p95 {:>8}  p99 {:>8}  max {:>8}  (n={})",
                p.p50, p.p95, p.p99, p.max, p.count
            ),
            None => writeln!(out, "{name:<38} (no data)"),
        };
    };
    line(&mut out, "POST /orders latency, ms", &s.post_latency_ms);
    if s.post_latency_from_schedule_ms.is_some() {
        line(
            &mut out,
            "POST latency from schedule, ms",
            &s.post_latency_from_schedule_ms,
        );
    }
    line(
        &mut out,
        "saga latency POST->SHIPPED, ms",
        &s.saga_latency_ms,
    );
    for w in &s.saga_latency_by_send_time_ms {
        line(
            &mut out,
            &format!("  sent {}-{} s", w.from_s, w.to_s),
            &Some(w.latency),
        );
    }
    line(&mut out, "POST->CANCELLED, ms", &s.cancel_latency_ms);
    if s.timeline_sample > 0 {
        let _ = writeln!(
            out,
            "hops from {} timelines (event timestamps), ms:",
            s.timeline_sample
        );
        for name in &s.hop_order {
            line(
                &mut out,
                &format!("  {name}"),
                &s.hop_latency_ms.get(name).copied(),
            );
        }
    }
    if s.errors.total == 0 {
        let _ = writeln!(out, "errors: none");
    } else {
        let kinds: Vec<String> = s
            .errors
            .by_kind
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "errors: {} ({})", s.errors.total, kinds.join(", "));
    }
    let _ = write!(
        out,
        "loader: cpu {} s, peak RSS {} MiB",
        s.loader.cpu_s.map_or("?".into(), |v| v.to_string()),
        s.loader.peak_rss_mib.map_or("?".into(), |v| v.to_string())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl() -> BodyTemplate {
        BodyTemplate {
            customer_id: "load-x".into(),
            sku_prefix: "LOAD-x-".into(),
            skus: 3,
            max_lines: 5,
            max_quantity: 3,
            decline_share: 0.5,
            seed: 7,
        }
    }

    #[test]
    fn bodies_are_deterministic_valid_and_use_distinct_skus() {
        let t = tpl();
        for seq in 0..200 {
            let (body, declined, total) = t.build(seq);
            assert_eq!(t.build(seq).0, body);
            let items = body["items"].as_array().expect("items");
            assert!(!items.is_empty() && items.len() <= 3);
            let mut skus: Vec<&str> = items.iter().filter_map(|i| i["sku"].as_str()).collect();
            skus.sort_unstable();
            skus.dedup();
            assert_eq!(skus.len(), items.len(), "distinct SKUs");
            assert!(skus
                .iter()
                .all(|s| ["LOAD-x-1", "LOAD-x-2", "LOAD-x-3"].contains(s)));
            let sum: i64 = items
                .iter()
                .map(|i| i["quantity"].as_i64().unwrap_or(0) * i["unitPrice"].as_i64().unwrap_or(0))
                .sum();
            assert_eq!(sum, total);
            assert_eq!(
                body["paymentToken"],
                if declined {
                    "tok_chargeDeclined"
                } else {
                    "tok_visa"
                }
            );
            assert_eq!(body["customerId"], "load-x");
        }
    }

    fn view(status: &str, code: Option<&str>) -> OrderView {
        OrderView {
            order_id: "o".into(),
            status: status.into(),
            reason_code: code.map(Into::into),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn outcomes_are_checked_against_the_token() {
        let rec = |declined| Record {
            seq: 0,
            declined,
            total: 1000,
            sent_unix_us: 0,
            latency_ms: 1.0,
            from_schedule_ms: None,
            result: Ok("o".into()),
        };
        assert!(expected_outcome(&rec(false), &view("SHIPPED", None)));
        assert!(!expected_outcome(&rec(true), &view("SHIPPED", None)));
        assert!(expected_outcome(
            &rec(true),
            &view("CANCELLED", Some("PAYMENT_DECLINED"))
        ));
        assert!(!expected_outcome(
            &rec(false),
            &view("CANCELLED", Some("PAYMENT_DECLINED"))
        ));
        assert!(!expected_outcome(
            &rec(true),
            &view("CANCELLED", Some("OUT_OF_STOCK"))
        ));
        assert!(!expected_outcome(&rec(false), &view("PAID", None)));
        assert_eq!(
            parse_ts_us("2026-01-01T00:00:00.123Z"),
            Some(1_767_225_600_123_000)
        );
        assert_eq!(parse_ts_us("yesterday"), None);
    }

    #[test]
    fn summary_json_has_the_documented_shape() {
        let mut lat: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut lat);
        let mut errors = Errors::default();
        errors.add("timeout");
        let s = Summary {
            schema: "orderflow-load-summary/1",
            started_at: "2026-01-01T00:00:00.000Z".into(),
            config: RunConfig {
                mode: "rate",
                rate: Some(500),
                concurrency: None,
                duration_s: 60.0,
                skus: 50,
                stock_per_sku: 1_000_000,
                sku_prefix: "LOAD-x-".into(),
                customer_id: "load-x".into(),
                decline_share: 0.05,
                max_lines: 2,
                max_quantity: 3,
                order_url: "http://127.0.0.1:8080".into(),
                inventory_url: "http://127.0.0.1:8082".into(),
            },
            sent: 30_000,
            accepted: 29_999,
            send_duration_s: 60.0,
            accepted_per_sec: 500.0,
            completed: 29_999,
            orders_per_sec: 495.1,
            drain_s: 0.6,
            settled: true,
            outcomes: BTreeMap::from([("SHIPPED".to_owned(), 29_999)]),
            post_latency_ms: p,
            post_latency_from_schedule_ms: None,
            saga_latency_ms: p,
            saga_latency_definition: SAGA_LATENCY_DEFINITION,
            saga_latency_by_send_time_ms: vec![crate::load::stats::WindowPercentiles {
                from_s: 0.0,
                to_s: 10.0,
                latency: p.expect("percentiles"),
            }],
            cancel_latency_ms: None,
            hop_latency_ms: BTreeMap::from([("post->OrderCreated".to_owned(), p.expect("p"))]),
            hop_order: hop_names(),
            timeline_sample: 1,
            shipped_event_minus_updated_at_ms: None,
            errors,
            loader: LoaderUsage::default(),
            plot: Some("target/bench/summary-latency.svg".into()),
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["orders_per_sec"], 495.1);
        for k in ["p50", "p95", "p99", "max", "count"] {
            assert!(v["saga_latency_ms"][k].is_number(), "saga_latency_ms.{k}");
        }
        assert_eq!(v["saga_latency_ms"]["p99"], 99.0);
        assert_eq!(v["errors"]["total"], 1);
        assert_eq!(v["errors"]["by_kind"]["timeout"], 1);
        assert!(v["cancel_latency_ms"].is_null());
        assert_eq!(v["config"]["rate"], 500);
        assert_eq!(v["hop_latency_ms"]["post->OrderCreated"]["p50"], 50.0);
        assert_eq!(v["saga_latency_by_send_time_ms"][0]["to_s"], 10.0);
        assert_eq!(v["saga_latency_by_send_time_ms"][0]["p99"], 99.0);
        assert!(v["saga_latency_definition"]
            .as_str()
            .is_some_and(|d| d.contains("updatedAt")));
        let text = render_text(&s);
        assert!(text.contains("495.1 orders/s completed"), "{text}");
        assert!(text.contains("errors: 1 (timeout=1)"), "{text}");
        assert!(text.contains("  sent 0-10 s"), "{text}");
    }

    #[test]
    fn loader_usage_reads_proc() {
        let u = loader_usage();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(u.cpu_s.is_some());
            assert!(u.peak_rss_mib.is_some_and(|m| m > 0.0));
        }
    }
}

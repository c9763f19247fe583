//! Sending the orders: the order bodies, one `POST /orders` and its
//! record, the progress bar, and the send phase at the asked rate.

use super::*;

/// One `POST /orders`.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) seq: u64,
    pub(super) declined: bool,
    pub(super) total: i64,
    pub(super) sent_unix_us: i64,
    pub(super) latency_ms: f64,
    pub(super) from_schedule_ms: Option<f64>,
    /// The order id, or the error kind.
    pub(super) result: Result<String, String>,
}

/// What every sender shares.
pub(super) struct Shared {
    pub(super) client: reqwest::Client,
    pub(super) orders_url: String,
    pub(super) sent: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) records: Mutex<Vec<Record>>,
    pub(super) body: BodyTemplate,
}

/// What an order body is made of.
#[derive(Debug, Clone)]
pub(super) struct BodyTemplate {
    pub(super) customer_id: String,
    pub(super) sku_prefix: String,
    pub(super) skus: u32,
    pub(super) max_lines: u32,
    pub(super) max_quantity: u32,
    pub(super) decline_share: f64,
    pub(super) seed: u64,
    /// The payment method (`pm_…`) of the load's customer that is approved.
    pub(super) visa_method: String,
    /// The one that is declined (`tok_chargeDeclined`).
    pub(super) declined_method: String,
}

impl BodyTemplate {
    pub(super) fn sku(&self, n: u32) -> String {
        format!("{}{}", self.sku_prefix, n + 1)
    }

    /// The catalog price of SKU `n` (minor units, EUR), set when the SKUs
    /// are stocked and sent as each line's `unitPrice`: 100 to 999.
    pub(super) fn price(n: u32) -> i64 {
        100 + i64::from(n.wrapping_mul(37) % 900)
    }

    /// The body of order `seq` (deterministic in seed and seq), whether it
    /// is meant to be declined, and its total.
    pub(super) fn build(&self, seq: u64) -> (serde_json::Value, bool, i64) {
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
            "paymentMethodId": if declined { &self.declined_method } else { &self.visa_method },
        });
        (body, declined, total)
    }
}

pub(super) fn classify(e: &reqwest::Error) -> String {
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

pub(super) async fn send_one(shared: &Shared, seq: u64, scheduled: Option<Instant>) -> Record {
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
            match resp.json::<AcceptedJson>().await {
                Ok(a) => Ok(a.order_id.to_string()),
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

pub(super) fn push(shared: &Shared, r: Record) {
    shared.records.lock().expect("records lock").push(r);
}

pub(super) fn progress_bar(len: u64, args: &Args, template: &str) -> ProgressBar {
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
pub(super) fn spawn_send_progress(
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

pub(super) async fn send_phase(args: &Args, shared: &Arc<Shared>) -> anyhow::Result<()> {
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

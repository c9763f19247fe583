//! Talking to the services besides sending: stocking the SKUs, waiting
//! for the sagas to settle, sampling timelines; and the loader's own
//! CPU and memory.

use super::*;

pub(super) async fn get_with_retry<T: serde::de::DeserializeOwned>(
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
pub(super) async fn list_orders(
    client: &reqwest::Client,
    order_url: &str,
    customer_id: &str,
) -> anyhow::Result<Vec<OrderJson>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{order_url}/orders?customerId={customer_id}&limit={PAGE}");
        if let Some(c) = &cursor {
            let _ = write!(url, "&cursor={c}");
        }
        let page: OrderPageJson = get_with_retry(client, &url).await?;
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
pub(super) async fn settle(
    args: &Args,
    client: &reqwest::Client,
    customer_id: &str,
    accepted_ids: &[String],
) -> anyhow::Result<(HashMap<String, OrderJson>, bool)> {
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
    let mut known: HashMap<String, OrderJson> = HashMap::new();
    let mut pending: Vec<String> = accepted_ids.to_vec();
    let is_terminal = |v: &OrderJson| TERMINAL.contains(&v.status);
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
                known.insert(o.order_id.to_string(), o);
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
        let probed: Vec<Option<OrderJson>> = stream::iter(probe.iter().map(|&i| &pending[i]))
            .map(|id| async move {
                let url = format!("{}/orders/{id}", args.order_url);
                get_with_retry::<OrderJson>(client, &url).await.ok()
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
                known.insert(v.order_id.to_string(), v);
            }
        }
        if open_probes == 0 && pending.len() > PROBE_ALL_BELOW {
            // Looks done: confirm with one pass over the list.
            let all = list_orders(client, &args.order_url, customer_id)
                .await
                .context("reading the run's orders")?;
            for o in all {
                if is_terminal(&o) {
                    known.insert(o.order_id.to_string(), o);
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

/// Registers the load customer's two cards with the payment service:
/// `(approved, declined)` payment method ids.
pub(super) async fn register_cards(
    args: &Args,
    client: &reqwest::Client,
    customer: &str,
) -> anyhow::Result<(String, String)> {
    let url = format!("{}/payment-methods", args.payment_url.trim_end_matches('/'));
    let mut ids = Vec::with_capacity(2);
    for token in ["tok_visa", "tok_chargeDeclined"] {
        let resp = client
            .post(&url)
            .json(&json!({"token": token, "customerId": customer}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let Some(id) = body["paymentMethodId"]
            .as_str()
            .filter(|_| status.is_success())
        else {
            bail!("POST {url}: HTTP {status}: {body}");
        };
        ids.push(id.to_owned());
    }
    Ok((ids.remove(0), ids.remove(0)))
}

pub(super) async fn stock_skus(
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
pub(super) type SampledTimeline = (i64, i64, Vec<(String, i64)>);

/// Per-hop latencies from the timelines of up to `n` evenly spread orders.
pub(super) async fn timeline_hops(
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
            let t: TimelineJson = get_with_retry(client, &url).await.ok()?;
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

pub(super) fn loader_usage() -> LoaderUsage {
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

//! Percentiles, saga hop extraction and the JSON summary (pure parts).

use std::collections::BTreeMap;

use serde::Serialize;

/// Exact percentiles of a sample (nearest-rank on the sorted values).
///
/// Kept by hand instead of `hdrhistogram`: a run keeps every sample anyway
/// (the plot draws each one), and sorting them is cheap at the sizes a run
/// makes, while a histogram would round each figure to its bucket.
/// Measured 2026-12-05 on the 2-core machine (`rustc -O`, sort with
/// `f64::total_cmp` + nearest rank, another build running): 30,000 samples
/// (a 60 s run at 500/s) 0.75 ms and 234 KiB; 120,000 3.2 ms; 1,000,000
/// 42 ms and 7.8 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of values.
    pub count: usize,
    /// Smallest value.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// The value at quantile `q` (0..=1) of `sorted` by the nearest-rank
/// method: the smallest value with at least `q` of the sample at or below
/// it. `None` for an empty sample.
pub fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1])
}

/// Rounds to 0.1 (values are milliseconds; finer digits are noise).
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Percentiles of `values` (sorted in place; NaNs are dropped). `None` for
/// an empty sample. Figures are rounded to 0.1.
pub fn percentiles(values: &mut Vec<f64>) -> Option<Percentiles> {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    let count = values.len();
    let p = |q| nearest_rank(values, q).map(round1);
    Some(Percentiles {
        count,
        min: round1(*values.first()?),
        mean: round1(values.iter().sum::<f64>() / count as f64),
        p50: p(0.50)?,
        p95: p(0.95)?,
        p99: p(0.99)?,
        max: round1(*values.last()?),
    })
}

/// Percentiles of the orders sent in one part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowPercentiles {
    /// Start of the part, seconds since the first send.
    pub from_s: f64,
    /// Its end (exclusive, except for the last part).
    pub to_s: f64,
    /// Latency of the orders sent in it, ms.
    #[serde(flatten)]
    pub latency: Percentiles,
}

/// Percentiles of `(sent at s, latency)` samples by send time, in `parts`
/// equal parts of `0..duration_s` (a sample at or past the end goes into
/// the last part); parts without samples are left out. Shows whether the
/// latency drifts while the load runs.
pub fn by_send_time(
    samples: &[(f64, f64)],
    duration_s: f64,
    parts: usize,
) -> Vec<WindowPercentiles> {
    if parts == 0 || duration_s <= 0.0 {
        return Vec::new();
    }
    let width = duration_s / parts as f64;
    let mut buckets = vec![Vec::new(); parts];
    for &(at_s, latency) in samples {
        let i = ((at_s.max(0.0) / width) as usize).min(parts - 1);
        buckets[i].push(latency);
    }
    buckets
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut v)| {
            Some(WindowPercentiles {
                from_s: round1(i as f64 * width),
                to_s: round1((i + 1) as f64 * width),
                latency: percentiles(&mut v)?,
            })
        })
        .collect()
}

/// The saga steps whose consecutive timeline timestamps make the hops.
pub const SAGA_STEPS: [&str; 6] = [
    "OrderCreated",
    "InventoryReserved",
    "PaymentProcessed",
    "ShippingCreated",
    "NotificationSent",
    "OrderShipped",
];

/// Names of the hops: `post->OrderCreated` (client send time to the order
/// service's event) and one per consecutive pair of [`SAGA_STEPS`].
pub fn hop_names() -> Vec<String> {
    let mut names = vec![format!("post->{}", SAGA_STEPS[0])];
    for pair in SAGA_STEPS.windows(2) {
        names.push(format!("{}->{}", pair[0], pair[1]));
    }
    names
}

/// Hop durations (ms) of one order from its timeline `(eventType, unix µs)`
/// and the client's send time: one entry per [`hop_names`], `None` where a
/// step is missing. The first occurrence of each event type counts.
pub fn hops(sent_unix_us: i64, events: &[(String, i64)]) -> Vec<Option<f64>> {
    let at = |ty: &str| events.iter().find(|(t, _)| t == ty).map(|&(_, ts)| ts);
    let mut points = vec![Some(sent_unix_us)];
    points.extend(SAGA_STEPS.iter().map(|s| at(s)));
    points
        .windows(2)
        .map(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => Some((b - a) as f64 / 1000.0),
            _ => None,
        })
        .collect()
}

/// What the run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// `rate` (open loop) or `concurrency` (closed loop).
    pub mode: &'static str,
    /// Target orders/s (open loop).
    pub rate: Option<u32>,
    /// Concurrent senders (closed loop).
    pub concurrency: Option<u32>,
    /// Sending time, seconds.
    pub duration_s: f64,
    /// Number of SKUs ordered from.
    pub skus: u32,
    /// Units stocked per SKU before the run.
    pub stock_per_sku: i64,
    /// SKU names are `<prefix><n>`, n in 1..=skus.
    pub sku_prefix: String,
    /// Customer id of every order of the run.
    pub customer_id: String,
    /// Share of orders paid with `tok_chargeDeclined`.
    pub decline_share: f64,
    /// Lines per order are 1..=max_lines.
    pub max_lines: u32,
    /// Quantity per line is 1..=max_quantity.
    pub max_quantity: u32,
    /// Order service base URL.
    pub order_url: String,
    /// Inventory service base URL.
    pub inventory_url: String,
}

/// Error counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    /// Sum of `by_kind`.
    pub total: u64,
    /// Count per kind (`http_422_unknown_sku`, `timeout`,
    /// `unexpected_outcome_...`, `not_terminal_...`).
    pub by_kind: BTreeMap<String, u64>,
}

impl Errors {
    /// Counts one error of `kind`.
    pub fn add(&mut self, kind: &str) {
        self.total += 1;
        *self.by_kind.entry(kind.to_owned()).or_default() += 1;
    }
}

/// Resources the load generator itself used.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoaderUsage {
    /// User + system CPU seconds of this process.
    pub cpu_s: Option<f64>,
    /// Peak resident set size (VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
}

/// The JSON summary `orderctl load --out` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Format tag.
    pub schema: &'static str,
    /// When sending started (RFC 3339 UTC).
    pub started_at: String,
    /// The parameters.
    pub config: RunConfig,
    /// `POST /orders` requests sent.
    pub sent: u64,
    /// Requests answered 202.
    pub accepted: u64,
    /// Seconds from the first to the last send.
    pub send_duration_s: f64,
    /// accepted / send_duration_s.
    pub accepted_per_sec: f64,
    /// Accepted orders that reached SHIPPED, DELIVERED or CANCELLED.
    pub completed: u64,
    /// completed / (last terminal transition − first send), orders/s.
    pub orders_per_sec: f64,
    /// Last terminal transition − last send, seconds: how far the saga
    /// lagged behind the load when sending stopped.
    pub drain_s: f64,
    /// Whether every accepted order was terminal before the deadline.
    pub settled: bool,
    /// Final status (and reason code) counts.
    pub outcomes: BTreeMap<String, u64>,
    /// Client send → 202 answer, ms.
    pub post_latency_ms: Option<Percentiles>,
    /// Scheduled send time → 202 answer, ms (includes time an order waited
    /// for a free slot; open loop only).
    pub post_latency_from_schedule_ms: Option<Percentiles>,
    /// Client send → SHIPPED, ms, over every SHIPPED order (see
    /// `saga_latency_definition`).
    pub saga_latency_ms: Option<Percentiles>,
    /// How `saga_latency_ms` is measured.
    pub saga_latency_definition: &'static str,
    /// `saga_latency_ms` of the orders sent in each sixth of the run.
    pub saga_latency_by_send_time_ms: Vec<WindowPercentiles>,
    /// Client send → CANCELLED, ms.
    pub cancel_latency_ms: Option<Percentiles>,
    /// Per-hop latency from the timelines of `timeline_sample` SHIPPED
    /// orders, ms.
    pub hop_latency_ms: BTreeMap<String, Percentiles>,
    /// Hop names in saga order (`hop_latency_ms` is sorted by name).
    pub hop_order: Vec<String>,
    /// Number of timelines fetched.
    pub timeline_sample: usize,
    /// OrderShipped timestamp − order updatedAt in the sample, ms (should be
    /// ~0: both are taken when the order service applies the transition).
    pub shipped_event_minus_updated_at_ms: Option<Percentiles>,
    /// Everything that went wrong.
    pub errors: Errors,
    /// This process's own CPU and memory.
    pub loader: LoaderUsage,
    /// The latency plot written next to the summary.
    pub plot: Option<String>,
}

/// The `saga_latency_definition` text.
pub const SAGA_LATENCY_DEFINITION: &str = "order.updatedAt of the SHIPPED order (order-service \
clock when it applied the transition to SHIPPED, ms resolution) minus the client's wall-clock \
time taken just before the POST /orders request was written; same host, same clock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(50.0));
        assert_eq!(nearest_rank(&v, 0.95), Some(95.0));
        assert_eq!(nearest_rank(&v, 0.99), Some(99.0));
        assert_eq!(nearest_rank(&v, 1.0), Some(100.0));
        assert_eq!(nearest_rank(&v, 0.0), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(nearest_rank(&[7.0], 0.99), Some(7.0));
        // Three values: p50 is the second, p95 and p99 the third.
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 0.95), Some(3.0));
    }

    #[test]
    fn latency_by_send_time_splits_the_run_into_equal_parts() {
        let samples = [
            (0.0, 10.0),
            (0.9, 30.0),
            (1.0, 50.0),
            (2.5, 70.0),
            (3.2, 90.0),
        ];
        let w = by_send_time(&samples, 3.0, 3);
        let got: Vec<(f64, f64, usize, f64)> = w
            .iter()
            .map(|w| (w.from_s, w.to_s, w.latency.count, w.latency.max))
            .collect();
        // A send at the end (3.2 s, the last POST of a run) counts in the
        // last part.
        assert_eq!(
            got,
            vec![
                (0.0, 1.0, 2, 30.0),
                (1.0, 2.0, 1, 50.0),
                (2.0, 3.0, 2, 90.0)
            ]
        );
        // Empty parts are left out; no parts, no windows.
        assert_eq!(by_send_time(&[(0.1, 5.0)], 3.0, 3).len(), 1);
        assert!(by_send_time(&samples, 3.0, 0).is_empty());
        assert!(by_send_time(&samples, 0.0, 3).is_empty());
    }

    #[test]
    fn percentiles_sort_round_and_skip_nan() {
        let mut v = vec![3.04, f64::NAN, 1.0, 2.0, 1000.26];
        let p = percentiles(&mut v).expect("non-empty");
        assert_eq!(p.count, 4);
        assert_eq!(p.min, 1.0);
        assert_eq!(p.p50, 2.0);
        assert_eq!(p.p95, 1000.3);
        assert_eq!(p.max, 1000.3);
        assert_eq!(p.mean, 251.6);
        assert_eq!(percentiles(&mut Vec::new()), None);
        assert_eq!(percentiles(&mut vec![f64::NAN]), None);
    }

    #[test]
    fn hops_follow_the_saga_steps() {
        assert_eq!(
            hop_names(),
            [
                "post->OrderCreated",
                "OrderCreated->InventoryReserved",
                "InventoryReserved->PaymentProcessed",
                "PaymentProcessed->ShippingCreated",
                "ShippingCreated->NotificationSent",
                "NotificationSent->OrderShipped",
            ]
        );
        let ev = |t: &str, ms: i64| (t.to_owned(), ms * 1000);
        let timeline = vec![
            ev("OrderCreated", 1_003),
            ev("InventoryReserved", 1_010),
            ev("PaymentProcessed", 1_030),
            ev("OrderConfirmed", 1_031),
            ev("NotificationSent", 1_100),
            ev("ShippingCreated", 1_050),
            ev("OrderShipped", 1_101),
            ev("InventoryReserved", 5_000),
        ];
        assert_eq!(
            hops(1_000_000, &timeline),
            [
                Some(3.0),
                Some(7.0),
                Some(20.0),
                Some(20.0),
                Some(50.0),
                Some(1.0)
            ]
        );
        let partial = vec![ev("OrderCreated", 1_003), ev("PaymentProcessed", 1_030)];
        assert_eq!(
            hops(1_000_000, &partial),
            [Some(3.0), None, None, None, None, None]
        );
    }

    #[test]
    fn errors_count_by_kind() {
        let mut e = Errors::default();
        e.add("timeout");
        e.add("timeout");
        e.add("http_503");
        assert_eq!(e.total, 3);
        assert_eq!(e.by_kind["timeout"], 2);
    }
}

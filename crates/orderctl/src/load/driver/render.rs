//! The human-readable summary of a load run.

use super::*;

/// The human-readable summary.
pub(in crate::load) fn render_text(s: &Summary) -> String {
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
    let line = |out: &mut String, name: &str, p: &Option<crate::load::stats::Percentiles>| {
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

//! `orderctl bench report`: the load's summary joined with what the stack
//! did meanwhile (memory and CPU per process from the snapshots, the
//! pipeline samples, handler times, batch sizes and delays from the final
//! `/metrics`) and the invariants, written as `summary.json` and printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Map, Value};

use super::dbstat::{self, DbSnapshot};
use super::procfs::Snapshot;
use super::sample::Pipeline;
use crate::console::metrics::{self, Sample};

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
const TICKS: f64 = 100.0;

/// The files `report` reads and writes.
#[derive(Debug, clap::Args)]
pub struct Files {
    /// `orderctl load --out`'s summary.
    #[arg(long)]
    pub load: PathBuf,
    /// Snapshot of the idle stack.
    #[arg(long)]
    pub idle: PathBuf,
    /// Snapshot at the start of the load.
    #[arg(long)]
    pub start: PathBuf,
    /// Snapshot at its end.
    #[arg(long)]
    pub end: PathBuf,
    /// `name count` lines of the invariant checks (`info_` lines inform).
    #[arg(long)]
    pub invariants: PathBuf,
    /// The counters of the run's databases before the load
    /// (`pg_stat_database`, JSON by service).
    #[arg(long)]
    pub db_start: Option<PathBuf>,
    /// The same once the services stopped.
    #[arg(long)]
    pub db_end: Option<PathBuf>,
    /// What the machine is (JSON).
    #[arg(long)]
    pub machine: PathBuf,
    /// The run's directory: `pipeline.jsonl` and `metrics/<service>.prom`
    /// are read from it.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where the summary goes.
    #[arg(long)]
    pub out: PathBuf,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn mib(kib: Option<u64>) -> Value {
    kib.map_or(Value::Null, |k| json!(round(k as f64 / 1024.0, 1)))
}

/// Max backlog and lag per service over the samples of `pipeline.jsonl`.
fn pipeline_max(text: &str) -> Map<String, Value> {
    let mut res = Map::new();
    for line in text.lines() {
        let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let t = rec.get("t").cloned().unwrap_or(Value::Null);
        for (name, v) in &rec {
            let Ok(p) = serde_json::from_value::<Pipeline>(v.clone()) else {
                continue;
            };
            let r = res.entry(name.clone()).or_insert_with(|| {
                json!({"max_outbox_backlog": 0, "max_outbox_backlog_at_s": null,
                       "max_consumer_lag": {}, "samples": 0})
            });
            r["samples"] = json!(r["samples"].as_u64().unwrap_or(0) + 1);
            if p.backlog > r["max_outbox_backlog"].as_f64().unwrap_or(0.0) {
                r["max_outbox_backlog"] = json!(p.backlog as i64);
                r["max_outbox_backlog_at_s"] = t.clone();
            }
            for (topic, lag) in p.lag {
                let cur = r["max_consumer_lag"][&topic]["lag"].as_f64();
                if cur.is_none_or(|c| lag > c) {
                    r["max_consumer_lag"][&topic] = json!({"lag": lag as i64, "at_s": t});
                }
            }
        }
    }
    res
}

/// The final `/metrics` scrape of each service (`metrics/<service>.prom`).
fn final_metrics(dir: &Path) -> BTreeMap<String, Vec<Sample>> {
    let mut res = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir.join("metrics")) else {
        return res;
    };
    for e in entries.flatten() {
        let path = e.path();
        let (Some(stem), Ok(text)) = (
            path.file_stem().and_then(|s| s.to_str()),
            std::fs::read_to_string(&path),
        ) else {
            continue;
        };
        res.insert(stem.to_owned(), metrics::parse(&text));
    }
    res
}

/// Label `name` of `s`, followed by the projection's name when the series
/// is a projection's consumer group (`<service group>.<name>`), so that a
/// service's own consumer and its projections are reported apart.
fn scoped(s: &Sample, name: &str) -> String {
    let mut value = s.label(name).unwrap_or("?").to_owned();
    if let Some(group) = s.label("group") {
        if !group.ends_with("-service") {
            value = format!("{value} ({})", group.rsplit('.').next().unwrap_or(group));
        }
    }
    value
}

/// `{sum, count}` of histogram `metric` per service and `key` label.
fn sums(
    all: &BTreeMap<String, Vec<Sample>>,
    metric: &str,
    key: &str,
) -> BTreeMap<String, BTreeMap<String, (f64, f64)>> {
    let (sum, count) = (format!("{metric}_sum"), format!("{metric}_count"));
    all.iter()
        .map(|(svc, samples)| {
            let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            for s in samples {
                let e = acc.entry(scoped(s, key));
                if s.name == sum {
                    e.or_default().0 += s.value;
                } else if s.name == count {
                    e.or_default().1 += s.value;
                }
            }
            acc.retain(|_, (_, n)| *n > 0.0);
            (svc.clone(), acc)
        })
        .collect()
}

/// Mean handler time (ms) and count per service and event type.
fn handlers(all: &BTreeMap<String, Vec<Sample>>) -> Value {
    let mut out = Map::new();
    for (svc, acc) in sums(all, "orderflow_handler_duration_seconds", "event_type") {
        let per: Map<String, Value> = acc
            .into_iter()
            .map(|(et, (sum, n))| {
                (
                    et,
                    json!({"count": n as u64, "mean_ms": round(1000.0 * sum / n, 1)}),
                )
            })
            .collect();
        out.insert(svc, Value::Object(per));
    }
    Value::Object(out)
}

/// Records per committed consumer transaction per service and topic.
fn batches(all: &BTreeMap<String, Vec<Sample>>) -> Value {
    let mut out = Map::new();
    for (svc, acc) in sums(all, "orderflow_consumer_transaction_records", "topic") {
        let per: Map<String, Value> = acc
            .into_iter()
            .map(|(t, (sum, n))| {
                (
                    t,
                    json!({"transactions": n as u64, "mean_records": round(sum / n, 2)}),
                )
            })
            .collect();
        out.insert(svc, Value::Object(per));
    }
    Value::Object(out)
}

/// Relay, fetch and consumer delay per service and topic: count, mean and
/// the p50/p99 bucket bounds (ms) of each histogram.
fn delays(all: &BTreeMap<String, Vec<Sample>>) -> Value {
    let mut out = Map::new();
    for (svc, samples) in all {
        #[derive(Default)]
        struct H {
            sum: f64,
            count: f64,
            buckets: Vec<(f64, f64)>,
        }
        let mut acc: BTreeMap<(String, String), H> = BTreeMap::new();
        for s in samples {
            let Some(rest) = s.name.strip_prefix("orderflow_") else {
                continue;
            };
            // (kind, metric name between `orderflow_` and `_delay_seconds_`)
            let kinds = [
                ("relay", "relay"),
                ("fetch", "consumer_fetch"),
                ("consumer", "consumer"),
            ];
            let Some((kind, part)) = kinds.iter().find_map(|(k, metric)| {
                rest.strip_prefix(metric)?
                    .strip_prefix("_delay_seconds_")
                    .map(|p| (*k, p))
            }) else {
                continue;
            };
            let h = acc
                .entry((kind.to_owned(), scoped(s, "topic")))
                .or_default();
            match part {
                "sum" => h.sum = s.value,
                "count" => h.count = s.value,
                "bucket" => {
                    let le = s
                        .label("le")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(f64::INFINITY);
                    h.buckets.push((le, s.value));
                }
                _ => {}
            }
        }
        let mut per = Map::new();
        for ((kind, topic), mut h) in acc {
            if h.count <= 0.0 {
                continue;
            }
            h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let q = |f: f64| {
                h.buckets
                    .iter()
                    .find(|(_, c)| *c >= f * h.count)
                    .map(|(le, _)| *le)
                    .filter(|le| le.is_finite())
                    .map_or(Value::Null, |le| json!(round(1000.0 * le, 1)))
            };
            let entry = json!({"count": h.count as u64, "mean_ms": round(1000.0 * h.sum / h.count, 1),
                               "p50_le_ms": q(0.5), "p99_le_ms": q(0.99)});
            per.entry(kind)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|m| m.insert(topic, entry));
        }
        out.insert(svc.clone(), Value::Object(per));
    }
    Value::Object(out)
}

/// The checks (name → violations) and the informational counts of an
/// invariants file.
fn invariants(text: &str) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let (mut checks, mut info) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [key, val] = parts[..] else { continue };
        let Ok(val) = val.parse::<i64>() else {
            continue;
        };
        match key.strip_prefix("info_") {
            Some(k) => info.insert(k.to_owned(), val),
            None => checks.insert(key.to_owned(), val),
        };
    }
    (checks, info)
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Joins and prints; `Ok(true)` when every invariant holds.
pub fn run(f: &Files) -> anyhow::Result<bool> {
    let mut summary: Map<String, Value> = read_json(&f.load)?;
    let idle: Snapshot = read_json(&f.idle)?;
    let start: Snapshot = read_json(&f.start)?;
    let end: Snapshot = read_json(&f.end)?;
    let machine: Value = read_json(&f.machine)?;
    let wall = end.t - start.t;
    let per_wall = |v: f64| {
        if wall > 0.0 {
            json!(round(v / wall, 2))
        } else {
            Value::Null
        }
    };

    let mut rss = Map::new();
    for (name, p) in &end.procs {
        let i = idle.procs.get(name).cloned().unwrap_or_default();
        rss.insert(
            name.clone(),
            json!({"idle": mib(i.rss_kib), "peak": mib(p.hwm_kib), "end": mib(p.rss_kib)}),
        );
    }
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    for (name, p) in &end.procs {
        if let (Some(t1), Some(t0)) = (p.ticks, start.procs.get(name).and_then(|s| s.ticks)) {
            cpu.insert(name.clone(), t1.saturating_sub(t0) as f64 / TICKS);
        }
    }
    for (pid, p) in &end.pg {
        let before = start.pg.get(pid).map_or(0, |s| s.ticks);
        *cpu.entry(p.group.clone()).or_default() += p.ticks.saturating_sub(before) as f64 / TICKS;
    }
    if let Some(loader) = summary
        .get("loader")
        .and_then(|l| l.get("cpu_s"))
        .and_then(Value::as_f64)
    {
        cpu.insert("orderctl load".to_owned(), loader);
    }
    let busy = ((end.jiffies.0 - end.jiffies.1) as f64
        - (start.jiffies.0 - start.jiffies.1) as f64)
        / TICKS;
    let mut by_cpu: Vec<(String, f64)> = cpu.clone().into_iter().collect();
    by_cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let other = busy - cpu.values().sum::<f64>();
    by_cpu.push((
        "everything else (other users of the machine)".to_owned(),
        other,
    ));
    let cpu_out: Vec<(String, Value)> = by_cpu
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({"cpu_s": round(*v, 1), "cores": per_wall(*v)}),
            )
        })
        .collect();

    let inv_text = std::fs::read_to_string(&f.invariants)
        .with_context(|| format!("reading {}", f.invariants.display()))?;
    let (checks, info) = invariants(&inv_text);
    let ok = !checks.is_empty() && checks.values().all(|v| *v == 0);
    let pipeline =
        pipeline_max(&std::fs::read_to_string(f.dir.join("pipeline.jsonl")).unwrap_or_default());
    let finals = final_metrics(&f.dir);

    summary.insert("invariants_ok".into(), json!(ok));
    summary.insert(
        "invariants".into(),
        json!({"violations": checks, "info": info}),
    );
    summary.insert("rss_mib".into(), Value::Object(rss.clone()));
    summary.insert(
        "cpu".into(),
        json!({"window_s": round(wall, 1), "machine_busy_cores": per_wall(busy),
               "by_process": cpu_out.iter().cloned().collect::<Map<_, _>>()}),
    );
    summary.insert("machine".into(), machine.clone());
    summary.insert("pipeline_max".into(), Value::Object(pipeline.clone()));
    summary.insert("handler_mean_ms".into(), handlers(&finals));
    summary.insert("records_per_consumer_transaction".into(), batches(&finals));
    summary.insert("delay_ms".into(), delays(&finals));
    // Every accepted order is terminal once the invariants are checked,
    // before the end counters are read.
    let accepted = summary
        .get("accepted")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let db = match (&f.db_start, &f.db_end) {
        (Some(s), Some(e)) => {
            let (s, e): (DbSnapshot, DbSnapshot) = (read_json(s)?, read_json(e)?);
            json!(dbstat::per_order(&s, &e, accepted))
        }
        _ => Value::Null,
    };
    summary.insert("database_per_order".into(), db);
    let mut text = serde_json::to_string_pretty(&summary)?;
    text.push('\n');
    std::fs::write(&f.out, text).with_context(|| format!("writing {}", f.out.display()))?;

    println!();
    println!("== bench: services' memory (MiB): idle RSS before the load / peak RSS (VmHWM) / RSS at the end");
    for (name, r) in &rss {
        println!(
            "  {name:<22} {:>8} / {:>8} / {:>8}",
            show(&r["idle"]),
            show(&r["peak"]),
            show(&r["end"])
        );
    }
    println!(
        "== bench: CPU seconds during the load window ({wall:.0} s; machine busy {:.2} of {} cores)",
        if wall > 0.0 { busy / wall } else { 0.0 },
        show(&machine["nproc"])
    );
    for (name, c) in &cpu_out {
        println!(
            "  {name:<48} {:>8.1} s  {:>5} cores",
            c["cpu_s"].as_f64().unwrap_or(0.0),
            show(&c["cores"])
        );
    }
    println!("== bench: pipeline (every 5 s from /metrics): max outbox backlog; max consumer lag per topic (at s)");
    for (name, r) in &pipeline {
        let lags: Vec<String> = r["max_consumer_lag"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, v)| format!("{t} {} (@{})", show(&v["lag"]), show(&v["at_s"])))
            .collect();
        let lags = if lags.is_empty() {
            "-".to_owned()
        } else {
            lags.join(", ")
        };
        println!(
            "  {name:<22} backlog {} (@{}); lag: {lags}",
            show(&r["max_outbox_backlog"]),
            show(&r["max_outbox_backlog_at_s"])
        );
    }
    let per_service = |title: &str, v: &Value, a: &str, b: &str| {
        println!("{title}");
        for (name, per) in v.as_object().into_iter().flatten() {
            let items: Vec<String> = per
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, x)| format!("{k} {} ({})", show(&x[a]), show(&x[b])))
                .collect();
            let items = if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            };
            println!("  {name:<22} {items}");
        }
    };
    per_service(
        "== bench: handler time per event (mean ms, count) from /metrics",
        &summary["handler_mean_ms"],
        "mean_ms",
        "count",
    );
    per_service(
        "== bench: records per consumer transaction (mean, transactions) from /metrics",
        &summary["records_per_consumer_transaction"],
        "mean_records",
        "transactions",
    );
    println!("== bench: delays per topic from /metrics (mean ms, p50 / p99 bucket bound ms): relay = event written -> handed to the producer; fetch = producer -> the consumer receives it; consumer = producer -> handling starts (the difference: queueing in the service)");
    for (name, kinds) in summary["delay_ms"].as_object().into_iter().flatten() {
        for (kind, topics) in kinds.as_object().into_iter().flatten() {
            let items: Vec<String> = topics
                .as_object()
                .into_iter()
                .flatten()
                .map(|(t, v)| {
                    format!(
                        "{t} {} ({} / {})",
                        show(&v["mean_ms"]),
                        show(&v["p50_le_ms"]),
                        show(&v["p99_le_ms"])
                    )
                })
                .collect();
            println!("  {name:<22} {kind:<8} {}", items.join(", "));
        }
    }
    println!("== bench: each service database's work per accepted order (pg_stat_database, load start -> services stopped): transactions (a statement outside one counts), rows inserted / updated / deleted");
    for (name, d) in summary["database_per_order"]
        .as_object()
        .into_iter()
        .flatten()
    {
        println!(
            "  {name:<22} {:>6} transactions  {} / {} / {} rows",
            show(&d["transactions"]),
            show(&d["rows_inserted"]),
            show(&d["rows_updated"]),
            show(&d["rows_deleted"])
        );
    }
    println!(
        "== bench: invariants {}",
        if ok { "OK" } else { "VIOLATED" }
    );
    for (k, v) in summary["invariants"]["violations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let mark = if v.as_i64() == Some(0) {
            "ok  "
        } else {
            "FAIL"
        };
        println!("  {mark} {k}: {v}");
    }
    for (k, v) in summary["invariants"]["info"]
        .as_object()
        .into_iter()
        .flatten()
    {
        println!("  info {k}: {v}");
    }
    let keys = [
        "orders_per_sec",
        "accepted_per_sec",
        "drain_s",
        "saga_latency_ms",
        "errors",
        "invariants_ok",
    ];
    let brief: Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                summary.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    println!("== bench: {}", Value::Object(brief));
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str) -> BTreeMap<String, Vec<Sample>> {
        BTreeMap::from([("order-service".to_owned(), metrics::parse(text))])
    }

    #[test]
    fn the_pipeline_maxima_keep_when_they_were_seen() {
        let text = r#"{"t": 0.0, "order": {"backlog": 3, "lag": {"a": 1}}, "payment": null}
{"t": 5.0, "order": {"backlog": 9, "lag": {"a": 4, "b": 2}}, "payment": {"backlog": 0, "lag": {}}}
{"t": 10.0, "order": {"backlog": 1, "lag": {"a": 2}}}
not json"#;
        let m = pipeline_max(text);
        assert_eq!(m["order"]["max_outbox_backlog"], 9);
        assert_eq!(m["order"]["max_outbox_backlog_at_s"], 5.0);
        assert_eq!(
            m["order"]["max_consumer_lag"]["a"],
            json!({"lag": 4, "at_s": 5.0})
        );
        assert_eq!(m["order"]["samples"], 3);
        assert_eq!(
            m["payment"]["samples"], 1,
            "a service that did not answer is not a sample"
        );
    }

    #[test]
    fn handler_means_and_batches_are_per_event_and_projection() {
        let all = samples(
            "orderflow_handler_duration_seconds_sum{group=\"order-service\",event_type=\"OrderCreated\"} 0.5\n\
             orderflow_handler_duration_seconds_count{group=\"order-service\",event_type=\"OrderCreated\"} 100\n\
             orderflow_handler_duration_seconds_sum{group=\"order-service.order-journal\",event_type=\"OrderCreated\"} 0.2\n\
             orderflow_handler_duration_seconds_count{group=\"order-service.order-journal\",event_type=\"OrderCreated\"} 100\n\
             orderflow_handler_duration_seconds_count{group=\"order-service\",event_type=\"Unseen\"} 0\n\
             orderflow_consumer_transaction_records_sum{group=\"order-service\",topic=\"payment-events\"} 50\n\
             orderflow_consumer_transaction_records_count{group=\"order-service\",topic=\"payment-events\"} 20\n",
        );
        let h = handlers(&all);
        assert_eq!(
            h["order-service"]["OrderCreated"],
            json!({"count": 100, "mean_ms": 5.0})
        );
        assert_eq!(
            h["order-service"]["OrderCreated (order-journal)"],
            json!({"count": 100, "mean_ms": 2.0})
        );
        assert!(h["order-service"].get("Unseen").is_none());
        let b = batches(&all);
        assert_eq!(
            b["order-service"]["payment-events"],
            json!({"transactions": 20, "mean_records": 2.5})
        );
    }

    #[test]
    fn delay_quantiles_are_the_first_bucket_bound_that_holds_them() {
        let all = samples(
            "orderflow_consumer_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"0.005\"} 10\n\
             orderflow_consumer_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"0.01\"} 60\n\
             orderflow_consumer_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"0.1\"} 99\n\
             orderflow_consumer_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"+Inf\"} 100\n\
             orderflow_consumer_delay_seconds_sum{group=\"order-service\",topic=\"t\"} 2\n\
             orderflow_consumer_delay_seconds_count{group=\"order-service\",topic=\"t\"} 100\n\
             orderflow_consumer_fetch_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"0.005\"} 90\n\
             orderflow_consumer_fetch_delay_seconds_bucket{group=\"order-service\",topic=\"t\",le=\"+Inf\"} 100\n\
             orderflow_consumer_fetch_delay_seconds_sum{group=\"order-service\",topic=\"t\"} 0.5\n\
             orderflow_consumer_fetch_delay_seconds_count{group=\"order-service\",topic=\"t\"} 100\n",
        );
        let d = delays(&all);
        assert_eq!(
            d["order-service"]["consumer"]["t"],
            json!({"count": 100, "mean_ms": 20.0, "p50_le_ms": 10.0, "p99_le_ms": 100.0})
        );
        assert_eq!(
            d["order-service"]["fetch"]["t"],
            json!({"count": 100, "mean_ms": 5.0, "p50_le_ms": 5.0, "p99_le_ms": null})
        );
    }

    #[test]
    fn invariants_are_checks_unless_marked_info() {
        let (checks, info) =
            invariants("orders_not_terminal 0\ninfo_emails_failed 2\nbroken\nx y\n");
        assert_eq!(
            checks,
            BTreeMap::from([("orders_not_terminal".to_owned(), 0)])
        );
        assert_eq!(info, BTreeMap::from([("emails_failed".to_owned(), 2)]));
    }
}

//! `orderctl bench sample`: every few seconds, each service's outbox
//! backlog and consumer lag per topic from its `/metrics`, one JSON line
//! per sample, until stopped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::console::metrics::{self, Sample};

/// One service in one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// `orderflow_outbox_backlog`.
    pub backlog: f64,
    /// `orderflow_consumer_lag`, summed over partitions, by topic.
    pub lag: BTreeMap<String, f64>,
}

/// The backlog and lag `samples` show.
pub fn pipeline(samples: &[Sample]) -> Pipeline {
    let mut p = Pipeline::default();
    for s in samples {
        match s.name.as_str() {
            "orderflow_outbox_backlog" => p.backlog = s.value,
            "orderflow_consumer_lag" => {
                *p.lag
                    .entry(s.label("topic").unwrap_or("?").to_owned())
                    .or_default() += s.value.max(0.0);
            }
            _ => {}
        }
    }
    p
}

/// Samples `targets` (`name=port` each) every `every` into `out` (appended)
/// until the process is stopped.
pub async fn run(out: &Path, targets: &[String], every: Duration) -> anyhow::Result<()> {
    let targets: Vec<(String, String)> = targets
        .iter()
        .map(|t| {
            t.split_once('=')
                .map(|(n, p)| (n.to_owned(), p.to_owned()))
                .with_context(|| format!("{t:?} is not name=port"))
        })
        .collect::<anyhow::Result<_>>()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let mut rec = serde_json::Map::new();
        rec.insert(
            "t".to_owned(),
            serde_json::json!((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0),
        );
        for (name, port) in &targets {
            let text = async {
                client
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .send()
                    .await?
                    .error_for_status()?
                    .text()
                    .await
            }
            .await;
            let value = match text {
                Ok(t) => serde_json::to_value(pipeline(&metrics::parse(&t)))?,
                Err(_) => serde_json::Value::Null,
            };
            rec.insert(name.clone(), value);
        }
        writeln!(file, "{}", serde_json::Value::Object(rec))?;
        file.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_and_lag_by_topic_are_read_from_the_metrics() {
        let text = "# TYPE orderflow_outbox_backlog gauge\n\
                    orderflow_outbox_backlog 7\n\
                    orderflow_consumer_lag{group=\"g\",topic=\"order-events\",partition=\"0\"} 3\n\
                    orderflow_consumer_lag{group=\"g\",topic=\"order-events\",partition=\"1\"} 2\n\
                    orderflow_consumer_lag{group=\"g\",topic=\"payment-events\",partition=\"0\"} -1\n\
                    orderflow_events_published_total{topic=\"order-events\"} 9\n";
        let p = pipeline(&metrics::parse(text));
        assert_eq!(p.backlog, 7.0);
        assert_eq!(p.lag["order-events"], 5.0);
        assert_eq!(
            p.lag["payment-events"], 0.0,
            "a negative lag counts as none"
        );
    }
}

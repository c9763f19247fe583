//! The end of a benchmark run: waiting for the outboxes to drain and
//! the invariants to hold (`orderflow_stack::check`, the checker of the
//! fault campaign and the end-to-end tests), then recording them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use orderflow_stack::{check, Stack};

/// Checks the invariants of `stack` against the load's summary
/// (`work/load-summary.json`) until they hold and every outbox is empty,
/// or until `quiesce_timeout`; writes `work/invariants.txt` (`id count`
/// lines, `info_` ones informational) and `work/violations.txt` (what
/// broke), and prints the latter when something did.
pub async fn check_when_settled(
    stack: &Stack,
    work: &Path,
    quiesce_timeout: Duration,
) -> anyhow::Result<()> {
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.join("load-summary.json")).context("reading the load's summary")?,
    )?;
    let number = |v: &serde_json::Value, what: &str| {
        v.as_i64()
            .with_context(|| format!("the load's summary has no {what}"))
    };
    let prefix = summary["config"]["sku_prefix"]
        .as_str()
        .context("the load's summary has no config.sku_prefix")?;
    let stock = number(&summary["config"]["stock_per_sku"], "config.stock_per_sku")?;
    let expected = check::Expected {
        accepted: check::Accepted::Count(number(&summary["accepted"], "accepted")?),
        initial: (1..=number(&summary["config"]["skus"], "config.skus")?)
            .map(|n| (format!("{prefix}{n}"), stock))
            .collect(),
        poison: Vec::new(),
        groups: BTreeMap::new(),
    };
    eprintln!(
        "==> checking the invariants (waiting up to {}s for compensations in flight)",
        quiesce_timeout.as_secs()
    );
    let quiesce = Instant::now();
    let mut lines = loop {
        let (lines, examples) = match check::read_state(stack).await {
            Ok(state) => invariant_lines(&state, &check::check(&state, &expected)),
            Err(e) => {
                eprintln!(
                    "==> WARNING: reading the state failed ({e:#}); counting that as a violation"
                );
                (vec![("state_unreadable".to_owned(), 1)], format!("{e:#}\n"))
            }
        };
        let violations: i64 = lines
            .iter()
            .filter(|(n, _)| !n.starts_with("info_"))
            .map(|(_, c)| c)
            .sum();
        let pending: i64 = lines
            .iter()
            .filter(|(n, _)| n.ends_with("outbox_pending"))
            .map(|(_, c)| c)
            .sum();
        if (violations == 0 && pending == 0) || quiesce.elapsed() >= quiesce_timeout {
            if violations > 0 {
                eprint!("{examples}");
            }
            std::fs::write(work.join("violations.txt"), examples)?;
            break lines;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    lines.push((
        "info_seconds_to_quiesce".to_owned(),
        i64::try_from(quiesce.elapsed().as_secs()).unwrap_or(i64::MAX),
    ));
    let text: String = lines.iter().map(|(n, c)| format!("{n} {c}\n")).collect();
    std::fs::write(work.join("invariants.txt"), text)?;
    Ok(())
}

/// One `id count` line per invariant (count = violations) and the
/// informational `info_` counts, and the examples of what broke each
/// (at most 20 per invariant).
fn invariant_lines(state: &check::State, all: &[check::Invariant]) -> (Vec<(String, i64)>, String) {
    let mut lines: Vec<(String, i64)> = all
        .iter()
        .map(|i| (i.id.to_owned(), i.violations.len() as i64))
        .collect();
    let failed = state
        .notifications
        .iter()
        .filter(|n| n.status == "FAILED")
        .count();
    let twice = state
        .mails()
        .values()
        .map(|ids| ids.len().saturating_sub(1))
        .sum::<usize>();
    lines.push(("info_emails_failed".to_owned(), failed as i64));
    lines.push(("info_emails_received_twice".to_owned(), twice as i64));
    for (svc, n) in &state.outbox_pending {
        lines.push((format!("info_{svc}_outbox_pending"), *n));
    }
    let mut examples = String::new();
    for i in all.iter().filter(|i| !i.violations.is_empty()) {
        examples.push_str(&format!("{} ({}):\n", i.name, i.violations.len()));
        for v in i.violations.iter().take(20) {
            examples.push_str(&format!("  {v}\n"));
        }
    }
    (lines, examples)
}

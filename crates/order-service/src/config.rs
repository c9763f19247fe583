//! The order service's own settings (the saga deadline); the shared ones
//! are [`orderflow_service::CommonConfig`].

use std::time::Duration;

use anyhow::Context as _;
use chrono::TimeDelta;
use orderflow_service::config::parse_duration;

/// Settings only the order service has.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// How long a saga may go without a status change before the order is
    /// cancelled (`SAGA_TIMEOUT`), e.g. 30s, 5m.
    #[arg(long, env = "ORDER_SAGA_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub saga_timeout: Duration,

    /// How often the deadline sweeper looks for stalled sagas.
    #[arg(long, env = "ORDER_DEADLINE_CHECK_INTERVAL", default_value = "5s",
          value_parser = parse_duration)]
    pub deadline_check_interval: Duration,

    /// Pace the journal's consumer: once records have arrived, its next
    /// fetch waits this long (librdkafka's `fetch.queue.backoff.ms` with
    /// `queued.min.messages=1`), so the broker answers it fewer, fuller
    /// fetches and the journal trails the saga by up to this much; 0: it
    /// fetches as the saga's consumer does (docs/benchmarks.md, "What the
    /// order journal costs").
    #[arg(long, env = "ORDER_JOURNAL_FETCH_INTERVAL", default_value = "250ms",
          value_parser = parse_interval)]
    pub journal_fetch_interval: Duration,

    /// Record every business event the journal sees for the first time on
    /// `audit-events` (kept 7 years), one record per journal batch in the
    /// journal's transaction, so an order's trail outlives its events'
    /// topics. On by default; measured at no cost to the saga at 20 and
    /// 200 orders/s and ~5 % of what it completes at 500/s
    /// (docs/benchmarks.md). `false` leaves the trail with the actions and
    /// the topics' events only.
    #[arg(long, env = "ORDER_AUDIT_EVENT_COPIES", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub audit_event_copies: bool,
}

/// A duration, or `0` for none.
fn parse_interval(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

impl Settings {
    /// The journal consumer's pace, if it has one.
    pub fn journal_fetch_interval(&self) -> Option<Duration> {
        (!self.journal_fetch_interval.is_zero()).then_some(self.journal_fetch_interval)
    }

    /// The saga timeout as a database interval, refused when too large.
    pub fn saga_timeout(&self) -> anyhow::Result<TimeDelta> {
        TimeDelta::from_std(self.saga_timeout).context("ORDER_SAGA_TIMEOUT is too large")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        Cli::try_parse_from(std::iter::once("order-service").chain(args.iter().copied()))
            .map(|c| c.settings)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_journal_is_paced_by_default_and_0_turns_that_off() {
        let s = parse(&[]).expect("defaults");
        assert_eq!(s.journal_fetch_interval(), Some(Duration::from_millis(250)));
        let s = parse(&["--journal-fetch-interval", "1s"]).expect("1s");
        assert_eq!(s.journal_fetch_interval(), Some(Duration::from_secs(1)));
        assert!(s.audit_event_copies, "events are recorded by default");
        let s = parse(&["--audit-event-copies", "false"]).expect("off");
        assert!(!s.audit_event_copies, "and can be left out");
        let s = parse(&["--journal-fetch-interval", "0"]).expect("0");
        assert_eq!(s.journal_fetch_interval(), None);
        let e = parse(&["--journal-fetch-interval", "soon"]).expect_err("refused");
        assert!(e.contains("is not a duration"), "{e}");
    }
}

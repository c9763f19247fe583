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
}

impl Settings {
    /// The saga timeout as a database interval, refused when too large.
    pub fn saga_timeout(&self) -> anyhow::Result<TimeDelta> {
        TimeDelta::from_std(self.saga_timeout).context("ORDER_SAGA_TIMEOUT is too large")
    }
}

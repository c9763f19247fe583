//! The deadline sweeper, for orders whose saga made no progress before
//! their deadline (`SAGA_TIMEOUT`):
//!
//! - before payment it cancels them, and the other services compensate;
//! - after payment it never does (a slow e-mail server or broker must not
//!   refund goods that are still going to ship): it marks the saga stalled
//!   (`stalledSince` on the order, a warning with the order id, the
//!   `orderflow_sagas_stalled{status}` gauge) and gives it a new deadline;
//!   the next step of the saga clears the mark.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use orderflow_events::trace_context::TraceContext;
use orderflow_events::TopicCatalog;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::db::{self, Cause, Clock, StoreError};
use crate::domain::saga::{self, DeadlineAction, ReasonCode};

/// Orders cancelled per transaction.
pub const BATCH: i64 = 100;

/// The sweeper's settings.
#[derive(Clone)]
pub struct Sweeper {
    /// The service's database.
    pub pool: PgPool,
    /// Topic names for the outbox.
    pub topics: TopicCatalog,
    /// The saga timeout (for the reason text and new deadlines).
    pub timeout: Duration,
    /// How often to look for overdue orders.
    pub interval: Duration,
}

impl Sweeper {
    /// Sweeps every `interval` until `shutdown` is cancelled. Database errors
    /// are logged and retried at the next tick.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let timeout = TimeDelta::from_std(self.timeout)?;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(timeout = %format_duration(self.timeout),
            interval = %format_duration(self.interval), "deadline sweeper started");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            // Keep going while full batches come back.
            while !shutdown.is_cancelled() {
                match self.sweep_once(timeout).await {
                    Ok(n) if n >= BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "deadline sweep failed; retrying at the next tick");
                        break;
                    }
                }
            }
        }
        tracing::info!("deadline sweeper stopped");
        Ok(())
    }

    /// Handles up to [`BATCH`] overdue orders in one transaction (cancels or
    /// marks them stalled, see the module docs); returns how many, and
    /// refreshes the stalled-saga gauge.
    pub async fn sweep_once(&self, timeout: TimeDelta) -> Result<usize, StoreError> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let overdue = db::overdue_orders(&mut tx, now, BATCH).await?;
        let reason = timeout_reason(self.timeout);
        let clock = Clock { now, timeout };
        let handled = overdue.len();
        for mut order in overdue {
            match saga::deadline_action(order.status, &order.facts()) {
                DeadlineAction::Nothing => continue,
                DeadlineAction::Stall => {
                    if db::mark_stalled(&mut tx, order.id, now, now + timeout).await? {
                        tracing::warn!(order_id = %order.id, correlation_id = %order.id,
                            status = %order.status, deadline = %order.deadline_at.to_rfc3339(),
                            "saga stalled (paid, or its cancellation waits for shipping's answer): \
                            waiting for its next step, not cancelling");
                    }
                    continue;
                }
                DeadlineAction::Cancel => {}
            }
            let previous = order.status;
            let deadline = order.deadline_at;
            let t = db::cancel_request(&order, ReasonCode::SagaTimeout);
            let cause = Cause::Local {
                trace: TraceContext::new_root(),
            };
            // The cancellation starts a trace of its own (a root span when
            // OpenTelemetry is active, whose context the outbox stores).
            let span = tracing::info_span!(
                "saga_timeout",
                otel.name = "saga timeout",
                order_id = %order.id,
            );
            db::apply_transition(
                &mut tx,
                &self.topics,
                &mut order,
                &t,
                &reason,
                &cause,
                &clock,
            )
            .instrument(span)
            .await?;
            tracing::warn!(order_id = %order.id, previous_status = %previous,
                deadline = %deadline.to_rfc3339(), reason_code = ReasonCode::SagaTimeout.as_str(),
                "saga timed out; cancellation requested");
        }
        let stalled = db::stalled_by_status(&mut tx).await?;
        tx.commit().await?;
        crate::domain::metrics::stalled(&stalled);
        Ok(handled)
    }
}

/// The `reason` of a timeout cancellation.
pub fn timeout_reason(timeout: Duration) -> String {
    format!("the saga made no progress for {}", format_duration(timeout))
}

/// Formats a duration the way it is configured: `5m`, `30s`, `2h`,
/// `1500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_like_the_configuration() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(
            timeout_reason(Duration::from_secs(300)),
            "the saga made no progress for 5m"
        );
    }
}

//! The order service's own metrics, in the process-wide registry that
//! `GET /metrics` renders:
//!
//! - `orderflow_orders_created_total`: orders accepted by `POST /orders`;
//! - `orderflow_orders_total{status}`: orders that reached `SHIPPED`,
//!   `DELIVERED` or `CANCELLED`;
//! - `orderflow_sagas_stalled{status}`: paid sagas past their deadline,
//!   waiting for their next step (set by the deadline sweeper);
//! - `orderflow_saga_duration_seconds{outcome}` (histogram): from creation
//!   to `SHIPPED` (`outcome="shipped"`) or `CANCELLED`
//!   (`outcome="cancelled"`), observed when the order gets there.
//!
//! They are recorded with the transition, inside its transaction: a commit
//! that fails after that (rare: the handler or request is then retried)
//! counts the transition twice.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::domain::saga::{Emit, Status};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

struct OrderMetrics {
    created: Counter,
    terminal: Family<StatusLabels, Counter>,
    saga_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    stalled: Family<StatusLabels, Gauge>,
}

fn saga_histogram() -> Histogram {
    // 50 ms .. ~27 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

fn metrics() -> &'static OrderMetrics {
    static METRICS: OnceLock<OrderMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = OrderMetrics {
            created: Counter::default(),
            terminal: Family::default(),
            saga_duration: Family::new_with_constructor(saga_histogram),
            stalled: Family::default(),
        };
        orderflow_events::metrics::register(|r| {
            r.register(
                "orderflow_orders_created",
                "Orders accepted by POST /orders",
                m.created.clone(),
            );
            r.register(
                "orderflow_orders",
                "Orders that reached a terminal status (SHIPPED, DELIVERED, CANCELLED)",
                m.terminal.clone(),
            );
            r.register(
                "orderflow_saga_duration_seconds",
                "Time from order creation to SHIPPED (outcome=shipped) or CANCELLED (outcome=cancelled)",
                m.saga_duration.clone(),
            );
            r.register(
                "orderflow_sagas_stalled",
                "Paid sagas past their deadline, waiting for their next step (not cancelled), by the status they are in",
                m.stalled.clone(),
            );
        });
        m
    })
}

/// Registers the metrics, so they show before the first order.
pub fn register() {
    metrics();
}

/// Counts an accepted order.
pub fn order_created() {
    metrics().created.inc();
}

/// Sets the stalled-saga gauge from `(status, count)` rows; the statuses a
/// paid saga can stall in that are absent are 0.
pub fn stalled(rows: &[(String, i64)]) {
    let m = metrics();
    for status in [
        Status::Pending,
        Status::InventoryReserved,
        Status::Paid,
        Status::ShippingCreated,
    ] {
        let n = rows
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        m.stalled
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .set(n);
    }
}

/// Records the terminal statuses an order created at `created_at` reached
/// through a transition that emitted `emits`, at `now`.
pub fn transition(emits: &[Emit], created_at: DateTime<Utc>, now: DateTime<Utc>) {
    let m = metrics();
    let seconds = (now - created_at).num_milliseconds().max(0) as f64 / 1000.0;
    for emit in emits {
        let (status, outcome) = match emit {
            Emit::Shipped => (Status::Shipped, Some("shipped")),
            Emit::Delivered => (Status::Delivered, None),
            Emit::Cancelled(_) => (Status::Cancelled, Some("cancelled")),
            Emit::Confirmed | Emit::CancelRequested(_) => continue,
        };
        m.terminal
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .inc();
        if let Some(outcome) = outcome {
            m.saga_duration
                .get_or_create(&OutcomeLabels { outcome })
                .observe(seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::saga::ReasonCode;

    #[test]
    fn terminal_statuses_and_saga_durations_are_recorded() {
        register();
        let created = Utc::now();
        let later = created + chrono::TimeDelta::milliseconds(1500);
        transition(&[Emit::Confirmed, Emit::Shipped], created, later);
        transition(&[Emit::Cancelled(ReasonCode::OutOfStock)], created, later);
        let text = orderflow_events::metrics::encode();
        for needle in [
            r#"orderflow_orders_total{status="SHIPPED"}"#,
            r#"orderflow_orders_total{status="CANCELLED"}"#,
            r#"orderflow_saga_duration_seconds_count{outcome="shipped"}"#,
            r#"orderflow_saga_duration_seconds_sum{outcome="cancelled"}"#,
            "# TYPE orderflow_orders_created counter",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains(r#"status="PAID""#), "{text}");
    }
}

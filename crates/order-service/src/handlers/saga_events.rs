//! The saga's events from the other services → each order's timeline,
//! facts and status, and the events that follow.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::{Event, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::{self, Cause, Clock, OrderRow};
use crate::domain::saga::{self, classify, Emit, Signal};

/// Every order-related event: timeline, facts, status, follow-up events.
pub struct OnSagaEvents {
    /// Topic names for the outbox.
    pub topics: TopicCatalog,
    /// Saga timeout: each status change moves the deadline this far.
    pub timeout: TimeDelta,
}

#[async_trait]
impl BatchHandler for OnSagaEvents {
    /// The records' orders are read and locked in one statement, the
    /// transitions worked out in memory in record order (several records of
    /// one order see each other's changes), and everything written in one
    /// more statement.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        // A malformed record fails before anything is read.
        let mut signals = Vec::with_capacity(events.len());
        for (i, (event, _)) in events.iter().enumerate() {
            let (order_id, signal, reason) = classify(&event.envelope.event).map_err(|e| (i, e))?;
            let id = Uuid::parse_str(order_id).map_err(|e| {
                let e = format!("orderId {order_id:?} is not a UUID: {e}");
                (i, HandlerError::permanent(e))
            })?;
            signals.push((id, signal, reason));
        }
        let mut ids: Vec<Uuid> = signals.iter().map(|s| s.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut orders: HashMap<Uuid, OrderRow> = db::lock_orders(tx, &ids)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let clock = Clock {
            now: Utc::now(),
            timeout: self.timeout,
        };
        let mut change = db::Change::new(&self.topics);
        let mut changed = Vec::new();
        for (i, ((event, span), (id, signal, reason))) in events.iter().zip(signals).enumerate() {
            let _entered = span.enter();
            let envelope = &event.envelope;
            let Some(order) = orders.get_mut(&id) else {
                let e = format!("{} for unknown order {id}", envelope.event_type());
                return Err((i, HandlerError::permanent(e)));
            };
            let t = saga::on_signal(order.status, order.facts(), order.pending_cancel(), signal);
            if !t.applied {
                change.record(id, envelope);
                tracing::debug!(order_id = %id, event = %envelope.event_type(), status = %order.status,
                    "recorded in the timeline only");
                continue;
            }
            learn(order, &envelope.event);
            let previous = order.status;
            let cause = Cause::Event {
                envelope,
                trace: event.trace.as_ref(),
            };
            let save = change
                .transition(order, &t, &reason, &cause, None, &clock)
                .map_err(|e| (i, e.into()))?;
            if save && !changed.contains(&id) {
                changed.push(id);
            }
            if order.status != previous {
                for emit in &t.emits {
                    if let Emit::Cancelled(code) = emit {
                        tracing::info!(order_id = %id, reason_code = code.as_str(), %reason,
                            previous_status = %previous, "order cancelled");
                    }
                }
                if signal == Signal::CancellationRejected {
                    tracing::warn!(order_id = %id, resumed = %order.status,
                        "cancellation refused by shipping: the parcel was dispatched first");
                }
                tracing::info!(order_id = %id, from = %previous, to = %order.status,
                    cause = %envelope.event_type(), "order status advanced");
            }
        }
        for id in &changed {
            change.save(&orders[id]);
        }
        change
            .write(tx)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))
    }
}

/// Copies what `event` tells about the order onto it (payment id, tracking
/// number).
fn learn(order: &mut OrderRow, event: &Event) {
    match event {
        Event::PaymentProcessed(p) => order.payment_id = Some(p.payment_id.clone()),
        Event::ShippingCreated(p) => order.tracking_number = Some(p.tracking_number.clone()),
        Event::ShippingDispatched(p) => {
            order
                .tracking_number
                .get_or_insert_with(|| p.tracking_number.clone());
        }
        Event::ShippingDelivered(p) => {
            order
                .tracking_number
                .get_or_insert_with(|| p.tracking_number.clone());
        }
        _ => {}
    }
}

//! Consumer handlers: the SKU catalogue from `InventoryAdjusted`, and the
//! saga's progress from the other services' events.

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use orderflow_events::consumer::{BatchHandler, ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::InventoryAdjusted;
use orderflow_events::{Event, EventType, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use std::collections::HashMap;

use crate::saga::{self, Emit, Signal};
use crate::store::{self, Cause, Clock, OrderRow};

/// The kind of the confirmation e-mail (`NotificationSent.kind`).
pub const ORDER_CONFIRMATION: &str = "ORDER_CONFIRMATION";

/// Event types [`OrderEvents`] handles.
pub const ORDER_EVENT_TYPES: &[EventType] = &[
    EventType::InventoryReserved,
    EventType::InventoryReservationFailed,
    EventType::InventoryReleased,
    EventType::PaymentProcessed,
    EventType::PaymentFailed,
    EventType::PaymentRefunded,
    EventType::ShippingCreated,
    EventType::ShippingDispatched,
    EventType::ShippingDelivered,
    EventType::ShippingCancelled,
    EventType::ShippingCancellationRejected,
    EventType::NotificationSent,
    EventType::NotificationFailed,
];

/// `InventoryAdjusted`: remembers the SKU, its availability and its price.
pub struct CatalogHandler;

#[async_trait]
impl Handler for CatalogHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<InventoryAdjusted>()?;
        if p.sku.is_empty() {
            return Err(HandlerError::permanent(
                "InventoryAdjusted with an empty SKU",
            ));
        }
        let entry = store::CatalogEntry {
            available: p.available,
            price: p.price,
            currency: p.currency.clone(),
        };
        store::upsert_catalog(tx, &p.sku, &entry, event.envelope.timestamp).await?;
        tracing::debug!(sku = %p.sku, available = p.available, "catalogue updated");
        Ok(())
    }
}

/// Every order-related event: timeline, facts, status, follow-up events.
pub struct OrderEvents {
    /// Topic names for the outbox.
    pub topics: TopicCatalog,
    /// Saga timeout: each status change moves the deadline this far.
    pub timeout: TimeDelta,
}

/// The order id an event is about, what it means for the status machine,
/// and the reason to give if it cancels the order.
pub fn classify(event: &Event) -> Result<(&str, Signal, String), HandlerError> {
    Ok(match event {
        Event::InventoryReserved(p) => (&p.order_id, Signal::Reserved, String::new()),
        Event::InventoryReservationFailed(p) => {
            let reason = if p.reason.trim().is_empty() {
                format!("out of stock: {}", p.skus.join(", "))
            } else {
                p.reason.clone()
            };
            (&p.order_id, Signal::ReservationFailed, reason)
        }
        Event::InventoryReleased(p) => (&p.order_id, Signal::Informational, String::new()),
        Event::PaymentProcessed(p) => (&p.order_id, Signal::Paid, String::new()),
        Event::PaymentFailed(p) => {
            let reason = if p.reason.trim().is_empty() {
                format!("payment declined: {}", p.decline_code)
            } else {
                p.reason.clone()
            };
            (&p.order_id, Signal::PaymentFailed, reason)
        }
        Event::PaymentRefunded(p) => (&p.order_id, Signal::Informational, String::new()),
        Event::ShippingCreated(p) => (&p.order_id, Signal::ShippingCreated, String::new()),
        Event::ShippingDispatched(p) => (&p.order_id, Signal::Dispatched, String::new()),
        Event::ShippingDelivered(p) => (&p.order_id, Signal::Delivered, String::new()),
        Event::ShippingCancelled(p) => (&p.order_id, Signal::ShippingCancelled, String::new()),
        Event::ShippingCancellationRejected(p) => {
            (&p.order_id, Signal::CancellationRejected, String::new())
        }
        Event::NotificationSent(p) => (&p.order_id, notification(&p.kind), String::new()),
        Event::NotificationFailed(p) => (&p.order_id, notification(&p.kind), String::new()),
        other => {
            return Err(HandlerError::permanent(format!(
                "the order service does not handle {}",
                other.event_type()
            )))
        }
    })
}

fn notification(kind: &str) -> Signal {
    if kind == ORDER_CONFIRMATION {
        Signal::Notified
    } else {
        Signal::Informational
    }
}

#[async_trait]
impl BatchHandler for OrderEvents {
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
        let mut orders: HashMap<Uuid, OrderRow> = store::lock_orders(tx, &ids)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let clock = Clock {
            now: Utc::now(),
            timeout: self.timeout,
        };
        let mut change = store::Change::new(&self.topics);
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

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_events::events::{NotificationFailed, NotificationSent, PaymentFailed};

    #[test]
    fn confirmation_mails_count_and_cancellation_mails_do_not() {
        let sent = Event::from(NotificationSent {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "a@b.cd".into(),
            subject: "s".into(),
        });
        assert_eq!(classify(&sent).expect("ok").1, Signal::Notified);
        let failed = Event::from(NotificationFailed {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "a@b.cd".into(),
            reason: "550".into(),
        });
        assert_eq!(classify(&failed).expect("ok").1, Signal::Notified);
        let cancelled_mail = Event::from(NotificationSent {
            order_id: "o".into(),
            notification_id: "n".into(),
            kind: "ORDER_CANCELLED".into(),
            recipient: "a@b.cd".into(),
            subject: "s".into(),
        });
        assert_eq!(
            classify(&cancelled_mail).expect("ok").1,
            Signal::Informational
        );
    }

    #[test]
    fn payment_failure_reason_falls_back_to_the_decline_code() {
        let e = Event::from(PaymentFailed {
            order_id: "o".into(),
            payment_id: "p".into(),
            amount: 1,
            currency: "EUR".into(),
            reason: String::new(),
            decline_code: "card_declined".into(),
        });
        let (_, signal, reason) = classify(&e).expect("ok");
        assert_eq!(signal, Signal::PaymentFailed);
        assert_eq!(reason, "payment declined: card_declined");
    }
}

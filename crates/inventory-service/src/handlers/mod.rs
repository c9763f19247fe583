//! The saga events the inventory acts on, applied a consumer batch at a
//! time inside the consumer's transaction (which also records the events in
//! the inbox), so stock moves, reservations and outgoing events commit
//! together:
//!
//! - `OrderCreated`: reserve every line of the order, or none →
//!   `InventoryReserved` or `InventoryReservationFailed`;
//! - `PaymentFailed`, `OrderCancelled`: give a held reservation back →
//!   `InventoryReleased`;
//! - `ShippingDispatched`: the reserved units leave the warehouse.
//!
//! A batch takes three statements whatever its size: lock the orders'
//! reservations, lock the stock rows of every SKU involved (each in one
//! statement and in key order, so concurrent batches queue up instead of
//! deadlocking), then write reservations, units and events. The records are
//! worked out in memory in between ([`crate::domain::ledger`]), in order.

use async_trait::async_trait;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{
    Event, InventoryReleased, InventoryReservationFailed, InventoryReserved, OrderCreated,
    StockLine,
};
use orderflow_events::{outbox, EventType, TopicCatalog};
use sqlx::PgConnection;

use crate::db;
use crate::domain::ledger::{skus_to_lock, Ledger, Outcome};
use crate::domain::reservation::invalid_lines;
use crate::SOURCE;

/// The event types [`OnSagaEvents`] handles.
pub const EVENT_TYPES: [EventType; 4] = [
    EventType::OrderCreated,
    EventType::OrderCancelled,
    EventType::PaymentFailed,
    EventType::ShippingDispatched,
];

/// Reserves, releases and ships stock for the saga's events.
pub struct OnSagaEvents {
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// What a record asks for.
enum Command<'a> {
    Reserve(&'a OrderCreated, Vec<StockLine>),
    Release { order_id: &'a str, reason: String },
    Ship { order_id: &'a str },
}

impl Command<'_> {
    fn order_id(&self) -> &str {
        match self {
            Command::Reserve(o, _) => &o.order_id,
            Command::Release { order_id, .. } | Command::Ship { order_id } => order_id,
        }
    }
}

/// Reads what `event` asks for; an invalid event is a permanent error.
fn command(event: &Event) -> Result<Command<'_>, HandlerError> {
    Ok(match event {
        Event::OrderCreated(o) => {
            let lines: Vec<StockLine> = o
                .items
                .iter()
                .map(|l| StockLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect();
            if let Some(problem) = invalid_lines(&lines) {
                return Err(HandlerError::permanent(format!(
                    "OrderCreated for order {}: {problem}",
                    o.order_id
                )));
            }
            Command::Reserve(o, lines)
        }
        Event::PaymentFailed(p) => Command::Release {
            order_id: &p.order_id,
            reason: format!("payment failed: {}", p.reason),
        },
        Event::OrderCancelled(c) => Command::Release {
            order_id: &c.order_id,
            reason: format!("order cancelled: {}", c.reason),
        },
        Event::ShippingDispatched(d) => Command::Ship {
            order_id: &d.order_id,
        },
        other => {
            return Err(HandlerError::permanent(format!(
                "the inventory does not handle {}",
                other.event_type().name()
            )))
        }
    })
}

#[async_trait]
impl BatchHandler for OnSagaEvents {
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        // A malformed record fails before anything is read or locked.
        let commands = events
            .iter()
            .enumerate()
            .map(|(i, (e, _))| command(&e.envelope.event).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let failed = |e: sqlx::Error| HandlerError::batch_failure(events.len(), e);
        let mut order_ids: Vec<&str> = commands.iter().map(Command::order_id).collect();
        order_ids.sort_unstable();
        order_ids.dedup();
        let stored = db::lock_reservations(tx, &order_ids)
            .await
            .map_err(failed)?;
        let new_lines = commands.iter().flat_map(|c| match c {
            Command::Reserve(_, lines) => lines.as_slice(),
            _ => &[],
        });
        let skus = skus_to_lock(new_lines, &stored);
        // Rows stay locked until the transaction ends: concurrent batches
        // for the same SKUs wait here and then see the stock this one left.
        let available = db::lock_stock(tx, &skus).await.map_err(failed)?;
        let mut ledger = Ledger::new(available, stored);
        let mut events_out = outbox::Rows::default();
        for (i, ((event, span), command)) in events.iter().zip(&commands).enumerate() {
            let _entered = span.enter();
            self.apply(&mut ledger, &mut events_out, event, command)
                .map_err(|e| (i, e))?;
        }
        db::write_batch(tx, ledger.writes(), events_out)
            .await
            .map_err(failed)
    }
}

impl OnSagaEvents {
    /// Works out one record on the ledger, queueing its follow-up event.
    fn apply(
        &self,
        ledger: &mut Ledger,
        out: &mut outbox::Rows,
        event: &ConsumedEvent,
        command: &Command<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = command.order_id();
        match command {
            Command::Reserve(order, lines) => match ledger.reserve(order_id, lines) {
                Outcome::Reserved => {
                    let reserved = InventoryReserved {
                        order_id: order.order_id.clone(),
                        items: lines.clone(),
                        customer_id: order.customer_id.clone(),
                        email: order.email.clone(),
                        total: order.total,
                        currency: order.currency.clone(),
                        // The payment method goes on to payment; a token
                        // (only in an event from before v2) as well.
                        payment_token: order.payment_token.clone(),
                        payment_method_id: order.payment_method_id.clone(),
                        shipping_address: order.shipping_address.clone(),
                    };
                    tracing::info!(order_id, "stock reserved");
                    event.follow_up(out, &self.catalog, SOURCE, order_id, reserved)
                }
                Outcome::Failed { reason, skus } => {
                    tracing::info!(order_id, %reason, "reservation failed");
                    let failed = InventoryReservationFailed {
                        order_id: order_id.to_owned(),
                        reason,
                        skus,
                    };
                    event.follow_up(out, &self.catalog, SOURCE, order_id, failed)
                }
                other => {
                    tracing::debug!(order_id, outcome = ?other, "order already has a reservation; nothing to do");
                    Ok(())
                }
            },
            Command::Release { reason, .. } => match ledger.release(order_id, reason.clone()) {
                Outcome::Released(items) => {
                    tracing::info!(order_id, %reason, "reservation released");
                    let released = InventoryReleased {
                        order_id: order_id.to_owned(),
                        items,
                        reason: reason.clone(),
                    };
                    event.follow_up(out, &self.catalog, SOURCE, order_id, released)
                }
                other => {
                    tracing::debug!(order_id, outcome = ?other, "no reservation held; nothing to release");
                    Ok(())
                }
            },
            Command::Ship { .. } => {
                match ledger.ship(order_id) {
                    Outcome::Shipped => tracing::info!(order_id, "reserved stock shipped"),
                    other => tracing::warn!(
                        order_id,
                        outcome = ?other,
                        "shipment dispatched without a held reservation; stock unchanged"
                    ),
                }
                Ok(())
            }
        }
    }
}

//! `PaymentProcessed` → create the shipment → `ShippingCreated`.

use std::collections::HashSet;

use async_trait::async_trait;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{PaymentProcessed, ShippingCreated};
use orderflow_events::{outbox, Envelope, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use super::outbox_error;
use crate::db::{self, NewShipment};
use crate::domain;
use crate::SOURCE;

/// Tracking numbers tried before giving up (a collision among 10^12 is
/// already unlikely once).
const TRACKING_ATTEMPTS: usize = 5;

/// Creates the shipment of a paid order.
pub struct OnPaymentProcessed {
    /// Topic names.
    pub catalog: TopicCatalog,
    /// Carrier named on every shipment.
    pub carrier: String,
}

/// A paid order still waiting for its shipment row.
struct Pending<'a> {
    /// Its record in the batch.
    at: usize,
    payment: &'a PaymentProcessed,
    shipment_id: Uuid,
    label_url: String,
}

/// A shipment about to be inserted, with its `ShippingCreated`.
struct Draft {
    tracking_number: String,
    envelope: Envelope,
}

#[async_trait]
impl BatchHandler for OnPaymentProcessed {
    /// The shipments of every paid order of the batch, and their events, are
    /// inserted in one statement. An order that already has a row (its
    /// shipment, or the tombstone of a cancellation) gets nothing; one
    /// whose random tracking number was taken draws another and is tried
    /// again.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let mut seen = HashSet::with_capacity(events.len());
        let mut pending = Vec::with_capacity(events.len());
        for (at, (event, span)) in events.iter().enumerate() {
            let payment = event
                .envelope
                .payload::<PaymentProcessed>()
                .map_err(|e| (at, e))?;
            if !seen.insert(payment.order_id.as_str()) {
                let _entered = span.enter();
                tracing::info!(order_id = %payment.order_id, "second shipment request in one batch; nothing to create");
                continue;
            }
            pending.push(Pending {
                at,
                payment,
                shipment_id: Uuid::now_v7(),
                label_url: domain::label_url(&payment.order_id),
            });
        }
        let failed = |e: sqlx::Error| HandlerError::batch_failure(events.len(), e);
        for _ in 0..TRACKING_ATTEMPTS {
            let mut rows = outbox::Rows::default();
            let mut drafts = Vec::with_capacity(pending.len());
            for p in &pending {
                let (event, span) = events[p.at];
                let _entered = span.enter();
                let draft = self.draft(event, p);
                let trace = event.trace.as_ref().map(|t| t.child());
                rows.push(
                    &self.catalog,
                    &p.payment.order_id,
                    &draft.envelope,
                    trace.as_ref(),
                )
                .map_err(|e| (p.at, outbox_error(e)))?;
                drafts.push(draft);
            }
            let shipments: Vec<NewShipment<'_>> = pending
                .iter()
                .zip(&drafts)
                .map(|(p, d)| self.row(events[p.at].0, p, d))
                .collect();
            let created = db::insert_created_all(tx, &shipments, &rows)
                .await
                .map_err(failed)?;
            let rest: Vec<&str> = pending
                .iter()
                .map(|p| p.payment.order_id.as_str())
                .filter(|id| !created.contains(*id))
                .collect();
            let existing = if rest.is_empty() {
                HashSet::new()
            } else {
                db::existing(tx, &rest).await.map_err(failed)?
            };
            let mut retry = Vec::new();
            for (p, d) in pending.into_iter().zip(drafts) {
                let _entered = events[p.at].1.enter();
                let order_id = p.payment.order_id.as_str();
                let tracking_number = &d.tracking_number;
                if created.contains(order_id) {
                    tracing::info!(order_id, %tracking_number, "shipment created");
                } else if existing.contains(order_id) {
                    // Created before, or the order was cancelled first
                    // (tombstone).
                    tracing::info!(
                        order_id,
                        "shipment exists or order cancelled; nothing to create"
                    );
                } else {
                    tracing::warn!(order_id, %tracking_number, "tracking number taken; drawing another");
                    retry.push(p);
                }
            }
            if retry.is_empty() {
                return Ok(());
            }
            pending = retry;
        }
        Err((
            pending[0].at,
            HandlerError::retryable("no free tracking number after several attempts"),
        ))
    }
}

impl OnPaymentProcessed {
    /// A new tracking number and the `ShippingCreated` naming it.
    fn draft(&self, event: &ConsumedEvent, p: &Pending<'_>) -> Draft {
        let tracking_number = domain::tracking_number(&mut rand::thread_rng());
        let envelope = Envelope::caused_by(
            &event.envelope,
            SOURCE,
            ShippingCreated {
                order_id: p.payment.order_id.clone(),
                shipment_id: p.shipment_id.to_string(),
                tracking_number: tracking_number.clone(),
                carrier: self.carrier.clone(),
                label_url: p.label_url.clone(),
                email: p.payment.email.clone(),
                recipient_name: p.payment.shipping_address.name.clone(),
                items: p.payment.items.clone(),
            },
        );
        Draft {
            tracking_number,
            envelope,
        }
    }

    fn row<'a>(
        &'a self,
        event: &'a ConsumedEvent,
        p: &'a Pending<'a>,
        d: &'a Draft,
    ) -> NewShipment<'a> {
        NewShipment {
            order_id: &p.payment.order_id,
            shipment_id: p.shipment_id,
            tracking_number: &d.tracking_number,
            carrier: &self.carrier,
            label_url: &p.label_url,
            recipient: &p.payment.shipping_address,
            email: &p.payment.email,
            items: &p.payment.items,
            correlation_id: &event.envelope.correlation_id,
            event_id: d.envelope.event_id,
            metadata: &event.envelope.metadata,
        }
    }
}

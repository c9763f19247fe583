//! The event handler: `ShippingCreated` → order confirmation e-mail,
//! `OrderCancelled` → cancellation e-mail, each sent at most once per order
//! and kind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{Event, EventType, NotificationFailed, NotificationSent};
use orderflow_events::{outbox, TopicCatalog};
use sqlx::PgConnection;
use tracing::Instrument;
use uuid::Uuid;

pub mod mail;

use crate::db::{self, NewNotification, Status};
use crate::domain::email::{self, Email, Kind};
use crate::domain::is_due;
use crate::handlers::mail::{Mailer, SendError};
use crate::SOURCE;

/// Event types [`OnSagaEvents`] handles.
pub const EVENT_TYPES: &[EventType] = &[EventType::ShippingCreated, EventType::OrderCancelled];

/// Sends notification e-mails and records them.
#[derive(Clone)]
pub struct OnSagaEvents {
    /// The SMTP sender.
    pub mailer: Arc<Mailer>,
    /// Topic names.
    pub catalog: TopicCatalog,
    /// E-mails of different orders a batch sends at once (at least 1).
    pub in_flight: usize,
}

/// The e-mail an event asks for.
fn email_for(event: &Event) -> Result<Email, HandlerError> {
    match event {
        Event::ShippingCreated(p) => Ok(email::confirmation(p)),
        Event::OrderCancelled(p) => Ok(email::cancellation(p)),
        other => Err(HandlerError::permanent(format!(
            "the notification service does not handle {}",
            other.event_type()
        ))),
    }
}

/// What became of one record's e-mail.
enum Delivery<'a> {
    /// Sent, or failed for good: the notification to record and the event
    /// that tells of it.
    Done(NewNotification<'a>, Box<Event>),
    /// No longer due: nothing to send or write.
    NotDue,
    /// Not sent: the server asked to retry it, or another e-mail of the
    /// batch was to be retried first.
    Retry(HandlerError),
}

#[async_trait]
impl BatchHandler for OnSagaEvents {
    /// Locks the batch's orders and reads the kinds they have (one
    /// statement each), sends the e-mails that are due, each order's in
    /// record order and up to [`in_flight`](Self::in_flight) orders at
    /// once, then records every e-mail that went out and queues its event
    /// in one statement: one transaction for the batch, however many
    /// e-mails were waiting on the server at once.
    ///
    /// Once the server asks to retry an e-mail, no further e-mail of the
    /// batch is sent. The handler then fails the first record it did not
    /// finish (that one, or an earlier one it had not reached, or a
    /// malformed one): the consumer commits the records before it and hands
    /// the rest back
    /// ([`keep_applied_on_failure`](orderflow_events::consumer::ConsumerOptions::keep_applied_on_failure)).
    /// An e-mail of a later record that did go out is recorded all the
    /// same, so when its record comes back its kind is there and it is not
    /// sent twice.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let mut stops = Vec::new();
        let mut emails = Vec::with_capacity(events.len());
        for (i, (event, _)) in events.iter().enumerate() {
            match email_for(&event.envelope.event) {
                Ok(e) => emails.push(e),
                Err(e) => {
                    stops.push((i, e));
                    break;
                }
            }
        }
        if emails.is_empty() {
            return stops.pop().map_or(Ok(()), Err);
        }
        let fail = |e: sqlx::Error| HandlerError::batch_failure(events.len(), e);
        let mut orders: Vec<&str> = emails.iter().map(|e| e.order_id.as_str()).collect();
        orders.sort_unstable();
        orders.dedup();
        db::lock_orders(tx, &orders).await.map_err(fail)?;
        let mut kinds: HashMap<String, Vec<Kind>> = db::kinds(tx, &orders).await.map_err(fail)?;
        // Each order's records, in record order; the orders in the order of
        // their first record.
        let mut groups: Vec<(Vec<Kind>, Vec<usize>)> = Vec::with_capacity(orders.len());
        let mut group_of: HashMap<&str, usize> = HashMap::with_capacity(orders.len());
        for (i, email) in emails.iter().enumerate() {
            let g = *group_of.entry(email.order_id.as_str()).or_insert_with(|| {
                let existing = kinds.remove(&email.order_id).unwrap_or_default();
                groups.push((existing, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        let retry_asked = AtomicBool::new(false);
        let retry_asked = &retry_asked;
        let emails = &emails;
        let mut outcomes: Vec<(usize, Delivery<'_>)> = futures::stream::iter(groups)
            .map(|(mut existing, records)| async move {
                let mut out = Vec::with_capacity(records.len());
                for i in records {
                    if retry_asked.load(Ordering::Relaxed) {
                        let e = "not sent: another e-mail of its batch is to be retried first";
                        out.push((i, Delivery::Retry(HandlerError::Infrastructure(e.into()))));
                        continue;
                    }
                    let (event, span) = events[i];
                    let email = &emails[i];
                    let delivery = self
                        .deliver(event, email, &existing)
                        .instrument(span.clone())
                        .await;
                    match &delivery {
                        Delivery::Done(..) => existing.push(email.kind),
                        Delivery::Retry(_) => retry_asked.store(true, Ordering::Relaxed),
                        Delivery::NotDue => {}
                    }
                    out.push((i, delivery));
                }
                out
            })
            .buffer_unordered(self.in_flight.max(1))
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        // The outbox gets the events in record order.
        outcomes.sort_unstable_by_key(|(i, _)| *i);
        let mut recorded = Vec::with_capacity(outcomes.len());
        let mut queued = outbox::Rows::default();
        for (i, delivery) in outcomes {
            match delivery {
                Delivery::Done(n, payload) => {
                    let (event, _) = events[i];
                    match event.follow_up(&mut queued, &self.catalog, SOURCE, n.order_id, *payload)
                    {
                        Ok(()) => recorded.push(n),
                        Err(e) => stops.push((i, e)),
                    }
                }
                Delivery::NotDue => {}
                Delivery::Retry(e) => stops.push((i, e)),
            }
        }
        db::insert(tx, &recorded, &queued).await.map_err(fail)?;
        stops
            .into_iter()
            .min_by_key(|(i, _)| *i)
            .map_or(Ok(()), Err)
    }
}

impl OnSagaEvents {
    /// Sends `email` (caused by `event`) unless it is no longer due given
    /// the order's `existing` kinds. A failure worth retrying sends nothing
    /// and is an infrastructure error, so the consumer retries the event
    /// until the server is back.
    async fn deliver<'a>(
        &self,
        event: &ConsumedEvent,
        email: &'a Email,
        existing: &[Kind],
    ) -> Delivery<'a> {
        let order_id = email.order_id.as_str();
        if !is_due(email.kind, existing) {
            tracing::info!(order_id, kind = %email.kind, ?existing, "notification not due; skipped");
            return Delivery::NotDue;
        }
        let id = Uuid::now_v7();
        let (status, error) = match self.mailer.send(email).await {
            Ok(()) => (Status::Sent, None),
            Err(SendError::Permanent(reason)) => (Status::Failed, Some(reason)),
            Err(SendError::Transient(reason)) => {
                tracing::warn!(order_id, kind = %email.kind, error = %reason, "e-mail not sent yet; will retry");
                return Delivery::Retry(HandlerError::Infrastructure(reason));
            }
        };
        let payload: Event = match &error {
            None => NotificationSent {
                order_id: order_id.to_owned(),
                notification_id: id.to_string(),
                kind: email.kind.as_str().to_owned(),
                recipient: email.to.clone(),
                subject: email.subject.clone(),
            }
            .into(),
            Some(reason) => NotificationFailed {
                order_id: order_id.to_owned(),
                notification_id: id.to_string(),
                kind: email.kind.as_str().to_owned(),
                recipient: email.to.clone(),
                reason: reason.clone(),
            }
            .into(),
        };
        match &error {
            None => tracing::info!(order_id, kind = %email.kind, to = %email.to, "e-mail sent"),
            Some(e) => {
                tracing::warn!(order_id, kind = %email.kind, to = %email.to, error = %e, "e-mail failed for good")
            }
        }
        let notification = NewNotification {
            id,
            order_id,
            kind: email.kind,
            recipient: &email.to,
            subject: &email.subject,
            status,
            error,
            message_id: &email.message_id,
            cause_event_id: event.envelope.event_id,
        };
        Delivery::Done(notification, Box::new(payload))
    }
}

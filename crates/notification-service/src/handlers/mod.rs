//! The event handler: `ShippingCreated` → order confirmation e-mail,
//! `OrderCancelled` → cancellation e-mail, each sent at most once per order
//! and kind.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
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

#[async_trait]
impl BatchHandler for OnSagaEvents {
    /// Locks the batch's orders and reads the kinds they have (one
    /// statement each), sends the e-mails that are due one after the other
    /// in record order, then records them and queues their events in one
    /// statement. It stops at the first record it cannot finish (malformed,
    /// or the SMTP server asks to retry): the records before it are
    /// recorded, nothing of that record or the later ones is written, and
    /// the consumer commits the former and hands the rest back
    /// ([`keep_applied_on_failure`](orderflow_events::consumer::ConsumerOptions::keep_applied_on_failure)),
    /// so no e-mail is sent twice for another record's failure.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let mut stop = None;
        let mut emails = Vec::with_capacity(events.len());
        for (i, (event, _)) in events.iter().enumerate() {
            match email_for(&event.envelope.event) {
                Ok(e) => emails.push(e),
                Err(e) => {
                    stop = Some((i, e));
                    break;
                }
            }
        }
        if emails.is_empty() {
            return stop.map_or(Ok(()), Err);
        }
        let fail = |e: sqlx::Error| HandlerError::batch_failure(events.len(), e);
        let mut orders: Vec<&str> = emails.iter().map(|e| e.order_id.as_str()).collect();
        orders.sort_unstable();
        orders.dedup();
        db::lock_orders(tx, &orders).await.map_err(fail)?;
        let mut kinds: HashMap<String, Vec<Kind>> = db::kinds(tx, &orders).await.map_err(fail)?;
        let mut recorded = Vec::with_capacity(emails.len());
        let mut queued = outbox::Rows::default();
        for (i, ((event, span), email)) in events.iter().zip(&emails).enumerate() {
            let existing = kinds.entry(email.order_id.clone()).or_default();
            match self
                .deliver(event, email, existing, &mut queued)
                .instrument((*span).clone())
                .await
            {
                Ok(Some(n)) => {
                    existing.push(email.kind);
                    recorded.push(n);
                }
                Ok(None) => {}
                Err(e) => {
                    stop = Some((i, e));
                    break;
                }
            }
        }
        db::insert(tx, &recorded, &queued).await.map_err(fail)?;
        stop.map_or(Ok(()), Err)
    }
}

impl OnSagaEvents {
    /// Sends `email` (caused by `event`) unless it is no longer due given
    /// the order's `existing` kinds, and queues `NotificationSent` or
    /// `NotificationFailed`: the notification to record, or `None` when it
    /// was not due. A failure worth retrying sends and queues nothing and
    /// returns an infrastructure error, so the consumer retries the event
    /// until the server is back.
    async fn deliver<'a>(
        &self,
        event: &ConsumedEvent,
        email: &'a Email,
        existing: &[Kind],
        queued: &mut outbox::Rows,
    ) -> Result<Option<NewNotification<'a>>, HandlerError> {
        let order_id = email.order_id.as_str();
        if !is_due(email.kind, existing) {
            tracing::info!(order_id, kind = %email.kind, ?existing, "notification not due; skipped");
            return Ok(None);
        }
        let id = Uuid::now_v7();
        let (status, error) = match self.mailer.send(email).await {
            Ok(()) => (Status::Sent, None),
            Err(SendError::Permanent(reason)) => (Status::Failed, Some(reason)),
            Err(SendError::Transient(reason)) => {
                tracing::warn!(order_id, kind = %email.kind, error = %reason, "e-mail not sent yet; will retry");
                return Err(HandlerError::Infrastructure(reason));
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
        event.follow_up(queued, &self.catalog, SOURCE, order_id, payload)?;
        match &error {
            None => tracing::info!(order_id, kind = %email.kind, to = %email.to, "e-mail sent"),
            Some(e) => {
                tracing::warn!(order_id, kind = %email.kind, to = %email.to, error = %e, "e-mail failed for good")
            }
        }
        Ok(Some(NewNotification {
            id,
            order_id,
            kind: email.kind,
            recipient: &email.to,
            subject: &email.subject,
            status,
            error,
            message_id: &email.message_id,
            cause_event_id: event.envelope.event_id,
        }))
    }
}

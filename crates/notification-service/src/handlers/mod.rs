//! Event handlers: one per consumed event type, both built on
//! [`Notifier`], which sends an e-mail at most once per order and kind.

mod order_cancelled;
mod shipping_created;

use std::sync::Arc;

use orderflow_events::consumer::ConsumedEvent;
use orderflow_events::error::HandlerError;
use orderflow_events::events::{Event, NotificationFailed, NotificationSent};
use orderflow_events::{outbox, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

pub use order_cancelled::OrderCancelledHandler;
pub use shipping_created::ShippingCreatedHandler;

use crate::db::{self, NewNotification, Status};
use crate::email::{Email, Kind};
use crate::mailer::{Mailer, SendError};
use crate::SOURCE;

/// Sends notification e-mails and records them.
#[derive(Clone)]
pub struct Notifier {
    /// The SMTP sender.
    pub mailer: Arc<Mailer>,
    /// Topic names.
    pub catalog: TopicCatalog,
}

/// Whether an e-mail of `kind` is still due, given the kinds the order
/// already has: never twice, and no confirmation once the cancellation was
/// seen.
pub fn is_due(kind: Kind, existing: &[Kind]) -> bool {
    let superseded = kind == Kind::OrderConfirmation && existing.contains(&Kind::OrderCancelled);
    !superseded && !existing.contains(&kind)
}

impl Notifier {
    /// Sends `email` (caused by `event`) unless it is no longer due, records
    /// the outcome and emits `NotificationSent` or `NotificationFailed`. A
    /// failure worth retrying records nothing and returns an infrastructure
    /// error, so the consumer retries the event until the server is back.
    async fn notify(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
        email: Email,
    ) -> Result<(), HandlerError> {
        let order_id = email.order_id.as_str();
        db::lock_order(tx, order_id).await?;
        let existing = db::kinds(tx, order_id).await?;
        if !is_due(email.kind, &existing) {
            tracing::info!(order_id, kind = %email.kind, ?existing, "notification not due; skipped");
            return Ok(());
        }
        let id = Uuid::now_v7();
        let (status, error) = match self.mailer.send(&email).await {
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
        let mut events = outbox::Rows::default();
        event.follow_up(&mut events, &self.catalog, SOURCE, order_id, payload)?;
        let inserted = db::insert(
            tx,
            &NewNotification {
                id,
                order_id,
                kind: email.kind,
                recipient: &email.to,
                subject: &email.subject,
                status,
                error: error.as_deref(),
                message_id: &email.message_id,
                cause_event_id: event.envelope.event_id,
            },
            &events,
        )
        .await?;
        if !inserted {
            // Unreachable under the order lock; kept so a duplicate can never
            // emit a second event (the statement queues it only with the row).
            return Ok(());
        }
        match &error {
            None => tracing::info!(order_id, kind = %email.kind, to = %email.to, "e-mail sent"),
            Some(e) => {
                tracing::warn!(order_id, kind = %email.kind, to = %email.to, error = %e, "e-mail failed for good")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_once_and_no_confirmation_after_cancellation() {
        use Kind::*;
        assert!(is_due(OrderConfirmation, &[]));
        assert!(is_due(OrderCancelled, &[]));
        assert!(!is_due(OrderConfirmation, &[OrderConfirmation]));
        assert!(!is_due(OrderCancelled, &[OrderCancelled]));
        assert!(!is_due(OrderConfirmation, &[OrderCancelled]));
        assert!(is_due(OrderCancelled, &[OrderConfirmation]));
    }
}

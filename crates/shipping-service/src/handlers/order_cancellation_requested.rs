//! `OrderCancellationRequested` → the shipping service decides the saga's
//! pivot: a shipment that has not left is cancelled (or, when none exists
//! yet, a tombstone stops a later one) and `ShippingCancelled` answers; a
//! shipment already dispatched stays as it is and
//! `ShippingCancellationRejected` answers.
//!
//! The decision is taken under the shipment's row lock, the same lock
//! `POST /shipments/{orderId}/dispatch` takes, so a dispatch and a
//! cancellation racing for one order are applied one after the other and
//! exactly one of them wins.

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use orderflow_events::consumer::{ConsumedEvent, Handler};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{
    OrderCancellationRequested, ShippingCancellationRejected, ShippingCancelled,
};
use orderflow_events::{Event, TopicCatalog};
use sqlx::PgConnection;

use super::db_error;
use crate::db::{self, Record};
use crate::domain::{self, CancelAnswer};

/// `reasonCode` of a refused cancellation.
pub const ALREADY_DISPATCHED: &str = "ALREADY_DISPATCHED";

/// Answers cancellation requests.
pub struct OnOrderCancellationRequested {
    /// Topic names.
    pub catalog: TopicCatalog,
}

#[async_trait]
impl Handler for OnOrderCancellationRequested {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &ConsumedEvent,
    ) -> Result<(), HandlerError> {
        let p = event.envelope.payload::<OrderCancellationRequested>()?;
        let order_id = p.order_id.as_str();
        let env = &event.envelope;
        let cancelled = |shipment_id: Option<String>| -> Event {
            ShippingCancelled {
                order_id: order_id.to_owned(),
                shipment_id,
                reason_code: p.reason_code.clone(),
            }
            .into()
        };
        let answer: Event = if db::insert_tombstone(tx, order_id, env).await? {
            tracing::info!(order_id, "cancellation before any shipment; tombstone left");
            cancelled(None)
        } else {
            match db::lock(tx, order_id).await.map_err(db_error)? {
                None => {
                    return Err(HandlerError::permanent(format!(
                        "shipment row of order {order_id} vanished while locked"
                    )))
                }
                // Voided before (e.g. by an OrderCancelled): still none.
                Some(Record::Tombstone) => cancelled(None),
                Some(Record::Shipment(s)) => match domain::answer_cancellation(s.status) {
                    CancelAnswer::Cancel => {
                        let now = Utc::now().trunc_subsecs(3);
                        db::set_status(tx, order_id, domain::Status::Cancelled, now, env.event_id)
                            .await
                            .map_err(db_error)?;
                        tracing::info!(order_id, "shipment cancelled before dispatch");
                        cancelled(Some(s.shipment_id.to_string()))
                    }
                    CancelAnswer::AlreadyCancelled => cancelled(Some(s.shipment_id.to_string())),
                    CancelAnswer::Reject => {
                        tracing::warn!(order_id, status = %s.status,
                            "cancellation refused: the shipment was dispatched first");
                        ShippingCancellationRejected {
                            order_id: order_id.to_owned(),
                            shipment_id: s.shipment_id.to_string(),
                            tracking_number: s.tracking_number.clone(),
                            shipment_status: s.status.as_str().to_owned(),
                            reason_code: ALREADY_DISPATCHED.to_owned(),
                        }
                        .into()
                    }
                },
            }
        };
        event
            .emit(tx, &self.catalog, crate::SOURCE, order_id, answer)
            .await
    }
}

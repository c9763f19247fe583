//! `InventoryReserved`: charge the order, once.

use std::collections::HashSet;

use async_trait::async_trait;
use orderflow_events::consumer::{BatchHandler, ConsumedEvent};
use orderflow_events::error::HandlerError;
use orderflow_events::events::{Event, InventoryReserved, PaymentFailed, PaymentProcessed};
use orderflow_events::{outbox, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::db::{self, NewPayment, Status};
use crate::domain::gateway::{self, Decline, Outcome};
use crate::domain::methods::{self, Method};
use std::collections::HashMap;

/// Charges a reserved order → `PaymentProcessed` or `PaymentFailed`.
pub struct OnInventoryReserved {
    /// Topic names.
    pub catalog: TopicCatalog,
    /// Largest amount the gateway accepts (minor units).
    pub max_amount: i64,
}

/// A charge decided for one record, recorded only if the order has no
/// payment yet.
struct Charge<'a> {
    request: &'a InventoryReserved,
    /// The token charged, when the payment method resolved.
    token: Option<&'a str>,
    payment_id: Uuid,
    decline: Option<Decline>,
}

impl<'a> Charge<'a> {
    /// Asks the gateway. The simulated gateway has no side effect, so
    /// deciding before the insert is safe; the row decides whether the
    /// outcome takes effect.
    fn decide(
        request: &'a InventoryReserved,
        known: &'a HashMap<String, Method>,
        max_amount: i64,
    ) -> Self {
        let token = methods::token_for(
            request.payment_method_id.as_deref(),
            request.payment_token.as_deref(),
            &request.customer_id,
            known,
        );
        let (token, decline) = match token {
            Ok(t) => match gateway::charge(t, request.total, max_amount) {
                Outcome::Approved => (Some(t), None),
                Outcome::Declined(d) => (Some(t), Some(d)),
            },
            Err(d) => (None, Some(d)),
        };
        Self {
            request,
            token,
            payment_id: Uuid::new_v4(),
            decline,
        }
    }

    fn row(&self) -> NewPayment<'_> {
        let r = self.request;
        NewPayment {
            order_id: &r.order_id,
            payment_id: self.payment_id,
            status: match self.decline {
                None => Status::Processed,
                Some(_) => Status::Declined,
            },
            amount: r.total,
            currency: Some(&r.currency),
            payment_token: self.token,
            decline_code: self.decline.as_ref().map(|d| d.code),
            reason: self.decline.as_ref().map(|d| d.message.as_str()),
        }
    }

    /// `PaymentProcessed` or `PaymentFailed`.
    fn follow_up(&self) -> Event {
        let r = self.request;
        match &self.decline {
            None => PaymentProcessed {
                order_id: r.order_id.clone(),
                payment_id: self.payment_id.to_string(),
                amount: r.total,
                currency: r.currency.clone(),
                customer_id: r.customer_id.clone(),
                email: r.email.clone(),
                shipping_address: r.shipping_address.clone(),
                items: r.items.clone(),
            }
            .into(),
            Some(d) => PaymentFailed {
                order_id: r.order_id.clone(),
                payment_id: self.payment_id.to_string(),
                amount: r.total,
                currency: r.currency.clone(),
                reason: d.message.clone(),
                decline_code: d.code.to_owned(),
            }
            .into(),
        }
    }
}

#[async_trait]
impl BatchHandler for OnInventoryReserved {
    /// Every record's charge is decided in memory, then the payments and
    /// their events are written in one statement. An order that already has
    /// a payment (a redelivery under a new event id, a second request in
    /// the same batch, or a cancellation's tombstone) is never charged
    /// again.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        events: &[(&ConsumedEvent, &tracing::Span)],
    ) -> Result<(), (usize, HandlerError)> {
        let mut requests = Vec::with_capacity(events.len());
        for (i, (event, _)) in events.iter().enumerate() {
            requests.push(
                event
                    .envelope
                    .payload::<InventoryReserved>()
                    .map_err(|e| (i, e))?,
            );
        }
        // The batch's payment methods, in one statement.
        let ids: Vec<&str> = requests
            .iter()
            .filter_map(|r| r.payment_method_id.as_deref())
            .collect();
        let known = db::find_methods(tx, &ids)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?;
        let mut seen = HashSet::with_capacity(events.len());
        let mut charges = Vec::with_capacity(events.len());
        let mut out = outbox::Rows::default();
        for (i, ((event, span), r)) in events.iter().zip(requests).enumerate() {
            let _entered = span.enter();
            if !seen.insert(r.order_id.as_str()) {
                tracing::info!(order_id = %r.order_id, "second charge request in one batch; not charging");
                continue;
            }
            let charge = Charge::decide(r, &known, self.max_amount);
            event
                .follow_up(
                    &mut out,
                    &self.catalog,
                    crate::SOURCE,
                    &r.order_id,
                    charge.follow_up(),
                )
                .map_err(|e| (i, e))?;
            charges.push((*span, charge));
        }
        let rows: Vec<NewPayment<'_>> = charges.iter().map(|(_, c)| c.row()).collect();
        let charged = db::insert_all(tx, &rows, &out)
            .await
            .map_err(|e| HandlerError::batch_failure(events.len(), e))?;
        for (span, c) in &charges {
            let _entered = span.enter();
            let order_id = c.request.order_id.as_str();
            let payment_id = &c.payment_id;
            if !charged.contains(order_id) {
                // Already charged or voided by an earlier cancellation:
                // never charge twice or after it.
                tracing::info!(
                    order_id,
                    "order already has a payment or was cancelled; not charging"
                );
            } else if let Some(d) = &c.decline {
                tracing::info!(order_id, %payment_id, decline_code = d.code, "payment declined");
            } else {
                let amount = c.request.total;
                tracing::info!(order_id, %payment_id, amount, "payment processed");
            }
        }
        Ok(())
    }
}

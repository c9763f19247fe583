//! The audit trail: who did what, written in the transaction of the change
//! it describes.
//!
//! An HTTP action that changes something on a caller's say-so (stock, a
//! shipment moving, an order cancelled, a card registered) adds an
//! `AuditRecorded` event to the outbox beside the change and its business
//! events, so the record exists exactly when the change does: a rolled-back
//! request leaves neither, a crash after the commit loses neither. The
//! relay publishes it on `audit-events` (kept 7 years), keyed by the order
//! when there is one, else by what was acted on.

use std::collections::BTreeMap;

use orderflow_events::events::AuditRecorded;
use orderflow_events::outbox;
use orderflow_events::trace_context::TraceContext;
use orderflow_events::{Envelope, TopicCatalog};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApiError, Principal};

/// One action to record.
#[derive(Debug, Clone)]
pub struct Action {
    /// What was done, e.g. `stock.adjusted`.
    pub action: &'static str,
    /// What was acted on, e.g. `sku:SKU-1`.
    pub subject: String,
    /// The order acted on, with its saga's correlation id.
    pub order: Option<(String, String)>,
    /// The events the action produced.
    pub event_ids: Vec<Uuid>,
    /// Action-specific values.
    pub detail: BTreeMap<String, String>,
}

impl Action {
    /// `action` on `subject`, about no order.
    pub fn new(action: &'static str, subject: impl Into<String>) -> Self {
        Self {
            action,
            subject: subject.into(),
            order: None,
            event_ids: Vec::new(),
            detail: BTreeMap::new(),
        }
    }

    /// About order `order_id`, whose saga is `correlation_id`.
    pub fn on_order(
        mut self,
        order_id: impl Into<String>,
        correlation_id: impl Into<String>,
    ) -> Self {
        self.order = Some((order_id.into(), correlation_id.into()));
        self
    }

    /// The action produced event `id`.
    pub fn produced(mut self, id: Uuid) -> Self {
        self.event_ids.push(id);
        self
    }

    /// Adds one detail.
    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.detail.insert(key.to_owned(), value.to_string());
        self
    }

    /// The event recording this action by `actor`, emitted by `source`.
    pub fn envelope(self, source: &str, actor: &Principal) -> Envelope {
        let (order_id, correlation_id) = match self.order {
            Some((order, correlation)) => (Some(order), correlation),
            None => (None, Uuid::now_v7().to_string()),
        };
        Envelope::new(
            source,
            correlation_id,
            AuditRecorded {
                action: self.action.to_owned(),
                actor: actor.sub.clone(),
                actor_roles: actor.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                subject: self.subject,
                order_id,
                event_ids: self.event_ids.iter().map(Uuid::to_string).collect(),
                detail: self.detail,
                events: Vec::new(),
            },
        )
    }
}

/// Adds the record of `action` by `actor` to the outbox in `conn`'s
/// transaction. Keyed by the order when there is one, else by the subject.
pub async fn record(
    conn: &mut PgConnection,
    topics: &TopicCatalog,
    source: &str,
    actor: &Principal,
    action: Action,
    trace: Option<&TraceContext>,
) -> Result<Uuid, ApiError> {
    let key = match &action.order {
        Some((order_id, _)) => order_id.clone(),
        None => action.subject.clone(),
    };
    let envelope = action.envelope(source, actor);
    outbox::enqueue(conn, topics, &key, &envelope, trace)
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;
    use orderflow_events::events::Event;

    #[test]
    fn records_the_actor_the_order_and_what_was_produced() {
        let operator = Principal {
            sub: "ops-ann".into(),
            roles: vec![Role::Operator],
        };
        let produced = Uuid::now_v7();
        let e = Action::new("shipment.dispatched", "shipment:s-1")
            .on_order("o-1", "corr-1")
            .produced(produced)
            .detail("status", "DISPATCHED")
            .envelope("shipping-service", &operator);
        assert_eq!(e.correlation_id, "corr-1");
        assert_eq!(e.source, "shipping-service");
        let Event::AuditRecorded(a) = e.event else {
            panic!("not an audit record")
        };
        assert_eq!(a.action, "shipment.dispatched");
        assert_eq!(a.actor, "ops-ann");
        assert_eq!(a.actor_roles, vec!["operator"]);
        assert_eq!(a.subject, "shipment:s-1");
        assert_eq!(a.order_id.as_deref(), Some("o-1"));
        assert_eq!(a.event_ids, vec![produced.to_string()]);
        assert_eq!(
            a.detail.get("status").map(String::as_str),
            Some("DISPATCHED")
        );
    }

    #[test]
    fn an_action_on_no_order_gets_a_correlation_of_its_own() {
        let customer = Principal {
            sub: "c-1".into(),
            roles: vec![Role::Customer],
        };
        let a = Action::new("stock.adjusted", "sku:S1").envelope("inventory-service", &customer);
        let b = Action::new("stock.adjusted", "sku:S1").envelope("inventory-service", &customer);
        assert_ne!(a.correlation_id, b.correlation_id);
        let Event::AuditRecorded(r) = a.event else {
            panic!("not an audit record")
        };
        assert_eq!(r.order_id, None);
    }
}

//! One order's saga for the swimlane: the events of its journal in causal
//! order (an event after the one that caused it), each with the time since
//! its cause.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event as the order API's `GET /orders/{id}/journal` returns it (the
/// fields the page uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEvent {
    /// Its id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// The service that emitted it: its lane.
    pub source: String,
    /// The event that caused it.
    pub causation_id: Option<Uuid>,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Where the log holds it.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// The order API's journal answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    /// The events, oldest first.
    pub events: Vec<JournalEvent>,
}

/// One step of the swimlane.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its lane: the service that emitted it.
    pub lane: String,
    /// The event that caused it, when that is in this saga.
    pub caused_by: Option<Uuid>,
    /// Its cause's type.
    pub caused_by_type: Option<String>,
    /// Milliseconds from its cause to it (the hop's latency).
    pub hop_ms: Option<f64>,
    /// Milliseconds from the saga's first event.
    pub at_ms: f64,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// `topic[partition]@offset`.
    pub position: String,
}

/// `events` in causal order: every event after its cause, the events
/// caused by one event (or without a cause in the saga) oldest first.
pub fn steps(events: &[JournalEvent]) -> Vec<Step> {
    let ids: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    let mut children: BTreeMap<Option<Uuid>, Vec<&JournalEvent>> = BTreeMap::new();
    for e in events {
        let parent = e
            .causation_id
            .filter(|c| ids.contains(c) && *c != e.event_id);
        children.entry(parent).or_default().push(e);
    }
    for list in children.values_mut() {
        list.sort_by_key(|e| (e.timestamp, e.event_id));
    }
    let start = events.iter().map(|e| e.timestamp).min();
    let by_id: BTreeMap<Uuid, &JournalEvent> = events.iter().map(|e| (e.event_id, e)).collect();
    // Depth-first from the roots; a cycle of causes (which the services
    // never write) leaves its events out of the walk, so they are added
    // after it, oldest first.
    let mut out = Vec::with_capacity(events.len());
    let mut seen = HashSet::new();
    let mut stack: Vec<&JournalEvent> = children.get(&None).cloned().unwrap_or_default();
    stack.reverse();
    while let Some(e) = stack.pop() {
        if !seen.insert(e.event_id) {
            continue;
        }
        out.push(step(e, &by_id, start));
        if let Some(kids) = children.get(&Some(e.event_id)) {
            stack.extend(kids.iter().rev());
        }
    }
    let mut rest: Vec<&JournalEvent> = events
        .iter()
        .filter(|e| !seen.contains(&e.event_id))
        .collect();
    rest.sort_by_key(|e| (e.timestamp, e.event_id));
    out.extend(rest.into_iter().map(|e| step(e, &by_id, start)));
    out
}

fn step(
    e: &JournalEvent,
    by_id: &BTreeMap<Uuid, &JournalEvent>,
    start: Option<DateTime<Utc>>,
) -> Step {
    let cause = e
        .causation_id
        .and_then(|c| by_id.get(&c))
        .filter(|c| c.event_id != e.event_id);
    let ms =
        |from: DateTime<Utc>| (e.timestamp - from).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    Step {
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        lane: e.source.clone(),
        caused_by: cause.map(|c| c.event_id),
        caused_by_type: cause.map(|c| c.event_type.clone()),
        hop_ms: cause.map(|c| ms(c.timestamp)),
        at_ms: start.map_or(0.0, ms),
        timestamp: e
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        position: format!("{}[{}]@{}", e.topic, e.partition, e.offset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u128, kind: &str, source: &str, cause: Option<u128>, ms: i64) -> JournalEvent {
        JournalEvent {
            event_id: Uuid::from_u128(n),
            event_type: kind.to_owned(),
            source: source.to_owned(),
            causation_id: cause.map(Uuid::from_u128),
            timestamp: DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap(),
            topic: "t".to_owned(),
            partition: 0,
            offset: n as i64,
        }
    }

    #[test]
    fn every_event_follows_its_cause_with_the_hop_time() {
        // Given out of order, with a clock that puts a child before its
        // parent (two services' clocks disagree by a few ms).
        let events = vec![
            event(4, "OrderConfirmed", "order-service", Some(3), 30),
            event(1, "OrderCreated", "order-service", None, 0),
            event(3, "PaymentProcessed", "payment-service", Some(2), 31),
            event(2, "InventoryReserved", "inventory-service", Some(1), 10),
            event(5, "ShippingCreated", "shipping-service", Some(3), 40),
        ];
        let s = steps(&events);
        let order: Vec<&str> = s.iter().map(|s| s.event_type.as_str()).collect();
        assert_eq!(
            order,
            [
                "OrderCreated",
                "InventoryReserved",
                "PaymentProcessed",
                "OrderConfirmed",
                "ShippingCreated"
            ]
        );
        assert_eq!(s[0].hop_ms, None);
        assert_eq!(s[1].hop_ms, Some(10.0));
        assert_eq!(s[3].hop_ms, Some(-1.0), "a skewed clock shows as it is");
        assert_eq!(s[3].caused_by_type.as_deref(), Some("PaymentProcessed"));
        assert_eq!(s[4].at_ms, 40.0);
        assert_eq!(s[2].lane, "payment-service");
    }

    #[test]
    fn causes_outside_the_saga_and_cycles_keep_every_event() {
        let events = vec![
            event(1, "OrderCreated", "order-service", Some(99), 0),
            event(2, "A", "x", Some(3), 5),
            event(3, "B", "x", Some(2), 6),
        ];
        let s = steps(&events);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].event_type, "OrderCreated");
        assert_eq!(
            s[0].caused_by, None,
            "a cause not in the saga is no cause here"
        );
        assert_eq!(s[1].event_type, "A");
        assert_eq!(s[2].event_type, "B");
    }

    #[test]
    fn no_events_no_steps() {
        assert!(steps(&[]).is_empty());
    }
}

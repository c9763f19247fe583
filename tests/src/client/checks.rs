//! Assertions over what the stack answered: the causal chain of a
//! timeline, event counts, Prometheus text.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Asserts the saga's causal chain over a timeline: every event carries the
/// first event's `correlationId` (which is the order id), the first has no
/// `causationId`, every other one names an event that appears earlier.
#[track_caller]
pub fn assert_causal_chain(order_id: &str, events: &[Value]) {
    assert!(!events.is_empty(), "empty timeline of {order_id}");
    let dump = || serde_json::to_string_pretty(events).unwrap_or_default();
    let first = &events[0];
    let correlation = first["correlationId"].as_str().unwrap_or_default();
    assert!(
        !correlation.is_empty(),
        "first event has no correlationId:\n{}",
        dump()
    );
    assert_eq!(
        correlation,
        order_id,
        "correlationId is not the order id (docs/saga.md):\n{}",
        dump()
    );
    let causation = &first["causationId"];
    assert!(
        causation.is_null() || causation.as_str() == Some(""),
        "the first event ({}) has a causationId {causation}:\n{}",
        first["eventType"],
        dump()
    );
    let mut seen: HashSet<&str> = HashSet::new();
    let mut ids: HashSet<&str> = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        let id = e["eventId"].as_str().unwrap_or_default();
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "event {i} has no UUID eventId:\n{}",
            dump()
        );
        assert!(ids.insert(id), "eventId {id} appears twice:\n{}", dump());
        assert_eq!(
            e["correlationId"].as_str(),
            Some(correlation),
            "event {i} ({}) has another correlationId:\n{}",
            e["eventType"],
            dump()
        );
        if i > 0 {
            let cause = e["causationId"].as_str().unwrap_or_default();
            assert!(
                seen.contains(cause),
                "event {i} ({}) has causationId {cause:?}, which is not an earlier event of the timeline:\n{}",
                e["eventType"],
                dump()
            );
        }
        seen.insert(id);
    }
}

/// How many events of `event_type` a timeline holds.
pub fn count_events(events: &[Value], event_type: &str) -> usize {
    events
        .iter()
        .filter(|e| e["eventType"] == event_type)
        .count()
}

/// The samples of an OpenMetrics text page: `name{labels}` -> value.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

//! Assertions over what the stack answered: the causal chain of a
//! timeline, event counts, Prometheus text.

use std::collections::{HashMap, HashSet};

use order_service::api::view::TimelineEventJson;
use uuid::Uuid;

/// Asserts the saga's causal chain over a timeline: every event carries the
/// first event's `correlationId` (which is the order id), the first has no
/// `causationId`, every other one names an event that appears earlier.
#[track_caller]
pub fn assert_causal_chain(order_id: &str, events: &[TimelineEventJson]) {
    assert!(!events.is_empty(), "empty timeline of {order_id}");
    let dump = || serde_json::to_string_pretty(events).unwrap_or_default();
    let first = &events[0];
    let correlation = first.correlation_id.as_str();
    assert_eq!(
        correlation,
        order_id,
        "correlationId is not the order id (docs/saga.md):\n{}",
        dump()
    );
    assert!(
        first.causation_id.is_none(),
        "the first event ({}) has a causationId:\n{}",
        first.event_type,
        dump()
    );
    let mut seen: HashSet<Uuid> = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        assert!(
            !seen.contains(&e.event_id),
            "eventId {} appears twice:\n{}",
            e.event_id,
            dump()
        );
        assert_eq!(
            e.correlation_id,
            correlation,
            "event {i} ({}) has another correlationId:\n{}",
            e.event_type,
            dump()
        );
        if i > 0 {
            assert!(
                e.causation_id.is_some_and(|c| seen.contains(&c)),
                "event {i} ({}) has causationId {:?}, which is not an earlier event of the timeline:\n{}",
                e.event_type,
                e.causation_id,
                dump()
            );
        }
        seen.insert(e.event_id);
    }
}

/// How many events of `event_type` a timeline holds.
pub fn count_events(events: &[TimelineEventJson], event_type: &str) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
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

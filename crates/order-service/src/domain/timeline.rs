//! Causal order of an order's timeline: causes before effects, otherwise by
//! timestamp, then by insertion sequence.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One event of an order's timeline as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TimelineEntry {
    /// Event id.
    pub event_id: Uuid,
    /// Insertion sequence.
    pub seq: i64,
    /// Event type name.
    pub event_type: String,
    /// Emitting service.
    pub source: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Cause, if any.
    pub causation_id: Option<Uuid>,
    /// Event timestamp.
    pub occurred_at: DateTime<Utc>,
}

/// Sorts `entries` topologically by `causation_id` (an event whose cause is
/// in the list comes after it); among events that are free to go next, the
/// earliest timestamp wins, then the lowest sequence. A cycle (impossible
/// with real ids) cannot lose events: what is left is appended in
/// (timestamp, sequence) order.
pub fn causal_order(mut entries: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    entries.sort_by_key(|e| (e.occurred_at, e.seq));
    let index: HashMap<Uuid, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id, i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    let mut waiting = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate() {
        if let Some(&parent) = e.causation_id.as_ref().and_then(|c| index.get(c)) {
            if parent != i {
                children[parent].push(i);
                waiting[i] = true;
            }
        }
    }
    // `entries` is sorted by (timestamp, seq), so the index is the priority.
    let mut ready: BinaryHeap<Reverse<usize>> = (0..entries.len())
        .filter(|&i| !waiting[i])
        .map(Reverse)
        .collect();
    let mut done = vec![false; entries.len()];
    let mut order = Vec::with_capacity(entries.len());
    while let Some(Reverse(i)) = ready.pop() {
        done[i] = true;
        order.push(i);
        for &c in &children[i] {
            // Each event has one cause, so it becomes ready exactly once.
            ready.push(Reverse(c));
        }
    }
    order.extend((0..entries.len()).filter(|&i| !done[i]));
    let mut slots: Vec<Option<TimelineEntry>> = entries.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(n: u128, seq: i64, ms: i64, cause: Option<u128>) -> TimelineEntry {
        TimelineEntry {
            event_id: Uuid::from_u128(n),
            seq,
            event_type: format!("E{n}"),
            source: "s".into(),
            correlation_id: "c".into(),
            causation_id: cause.map(Uuid::from_u128),
            occurred_at: Utc.timestamp_millis_opt(ms).single().expect("ts"),
        }
    }

    fn ids(v: &[TimelineEntry]) -> Vec<u128> {
        v.iter().map(|e| e.event_id.as_u128()).collect()
    }

    #[test]
    fn causes_come_first_even_with_skewed_clocks() {
        // 1 → 2 → 3, but 3's clock is behind and it was stored first.
        let v = vec![
            entry(3, 1, 100, Some(2)),
            entry(2, 2, 300, Some(1)),
            entry(1, 3, 200, None),
        ];
        assert_eq!(ids(&causal_order(v)), vec![1, 2, 3]);
    }

    #[test]
    fn independent_events_go_by_timestamp_then_sequence() {
        let v = vec![
            entry(1, 1, 100, None),
            entry(2, 5, 300, Some(1)),
            entry(3, 4, 200, Some(1)),
            entry(4, 3, 200, Some(1)),
        ];
        assert_eq!(ids(&causal_order(v)), vec![1, 4, 3, 2]);
    }

    #[test]
    fn branches_interleave_by_timestamp() {
        // OrderCreated(1) → Reserved(2) → Paid(3) → {Confirmed(4), Shipping(5)}
        let v = vec![
            entry(5, 5, 500, Some(3)),
            entry(4, 4, 400, Some(3)),
            entry(3, 3, 300, Some(2)),
            entry(2, 2, 200, Some(1)),
            entry(1, 1, 100, None),
            entry(6, 6, 450, Some(4)),
        ];
        assert_eq!(ids(&causal_order(v)), vec![1, 2, 3, 4, 6, 5]);
    }

    #[test]
    fn unknown_causes_are_roots_and_nothing_is_lost() {
        let v = vec![
            entry(1, 1, 100, Some(99)),
            entry(2, 2, 50, None),
            // a cycle: 3 ↔ 4
            entry(3, 3, 10, Some(4)),
            entry(4, 4, 20, Some(3)),
            // self-caused
            entry(5, 5, 5, Some(5)),
        ];
        let out = causal_order(v);
        assert_eq!(ids(&out), vec![5, 2, 1, 3, 4]);
    }

    #[test]
    fn empty() {
        assert!(causal_order(Vec::new()).is_empty());
    }
}

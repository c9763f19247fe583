//! Which partitions each consumer group of this process holds right now,
//! kept from librdkafka's rebalance callbacks.
//!
//! A consumer that is connected but holds no partition consumes nothing,
//! and nothing else shows it: the broker answers, `/health/ready` is green,
//! and the saga stalls. `GET /health/consumers` shows this table and the
//! `orderflow_consumer_assigned_partitions` gauge counts it, so that
//! `scripts/up` (and an operator) can wait for, or alert on, a group member
//! that has nothing assigned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use chrono::{DateTime, Utc};
use rdkafka::TopicPartitionList;
use serde::Serialize;

/// The assignment of one consumer group member of this process.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupAssignment {
    /// The consumer group: a service's, or one of its projections'
    /// (`<group>.<projection>`).
    pub group: String,
    /// The topics it subscribed to.
    pub topics: Vec<String>,
    /// Partitions held now, by topic.
    pub partitions: BTreeMap<String, BTreeSet<i32>>,
    /// How many partitions it holds now (all topics).
    pub assigned: usize,
    /// Rebalances seen since it subscribed (assignments and revocations).
    pub rebalances: u64,
    /// When the assignment last changed.
    pub changed_at: Option<DateTime<Utc>>,
    /// The last rebalance error, cleared by the next assignment.
    pub last_error: Option<String>,
}

fn table() -> MutexGuard<'static, BTreeMap<String, GroupAssignment>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, GroupAssignment>>> = OnceLock::new();
    TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn publish(a: &GroupAssignment) {
    crate::metrics::pipeline()
        .assigned_partitions
        .get_or_create(&crate::metrics::GroupLabels {
            group: a.group.clone(),
        })
        .set(i64::try_from(a.assigned).unwrap_or(i64::MAX));
}

/// A member of `group` subscribed to `topics` and holds nothing yet.
pub(crate) fn subscribed(group: &str, topics: &[String]) {
    let a = GroupAssignment {
        group: group.to_owned(),
        topics: topics.to_vec(),
        changed_at: Some(Utc::now()),
        ..GroupAssignment::default()
    };
    publish(&a);
    table().insert(group.to_owned(), a);
}

/// Applies a rebalance callback: `assign` adds the partitions of `list`
/// (the whole assignment with the eager protocol, an increment with the
/// cooperative one), a revocation removes them.
pub(crate) fn rebalanced(group: &str, list: &TopicPartitionList, assign: bool) {
    let mut t = table();
    let a = t
        .entry(group.to_owned())
        .or_insert_with(|| GroupAssignment {
            group: group.to_owned(),
            ..GroupAssignment::default()
        });
    for e in list.elements() {
        let set = a.partitions.entry(e.topic().to_owned()).or_default();
        if assign {
            set.insert(e.partition());
        } else {
            set.remove(&e.partition());
        }
    }
    a.partitions.retain(|_, set| !set.is_empty());
    a.assigned = a.partitions.values().map(BTreeSet::len).sum();
    a.rebalances += 1;
    a.changed_at = Some(Utc::now());
    if assign {
        a.last_error = None;
    }
    publish(a);
}

/// Records a rebalance error of `group`.
pub(crate) fn failed(group: &str, error: String) {
    let mut t = table();
    if let Some(a) = t.get_mut(group) {
        a.last_error = Some(error);
    }
}

/// The member of `group` left (its consumer stopped).
pub(crate) fn left(group: &str) {
    if let Some(mut a) = table().remove(group) {
        a.assigned = 0;
        publish(&a);
    }
}

/// Every consumer group member of this process, by group.
pub fn snapshot() -> Vec<GroupAssignment> {
    table().values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use rdkafka::Offset;

    use super::*;

    fn list(entries: &[(&str, i32)]) -> TopicPartitionList {
        let mut l = TopicPartitionList::new();
        for (t, p) in entries {
            l.add_partition_offset(t, *p, Offset::Invalid)
                .expect("partition");
        }
        l
    }

    fn get(group: &str) -> GroupAssignment {
        snapshot()
            .into_iter()
            .find(|a| a.group == group)
            .expect("group in the snapshot")
    }

    #[test]
    fn a_member_holds_what_it_was_assigned_until_revoked() {
        let g = "assignment-test-eager";
        subscribed(g, &["a".into(), "b".into()]);
        assert_eq!(get(g).assigned, 0);
        rebalanced(g, &list(&[("a", 0), ("a", 1), ("b", 0)]), true);
        let a = get(g);
        assert_eq!(a.assigned, 3);
        assert_eq!(a.partitions["a"], BTreeSet::from([0, 1]));
        assert_eq!(a.topics, vec!["a".to_owned(), "b".to_owned()]);
        // Eager: everything is revoked, then the new assignment arrives.
        rebalanced(g, &list(&[("a", 0), ("a", 1), ("b", 0)]), false);
        assert_eq!(get(g).assigned, 0);
        assert!(get(g).partitions.is_empty());
        failed(g, "boom".into());
        assert_eq!(get(g).last_error.as_deref(), Some("boom"));
        rebalanced(g, &list(&[("b", 0)]), true);
        let a = get(g);
        assert_eq!((a.assigned, a.rebalances, a.last_error), (1, 3, None));
        let text = crate::metrics::encode();
        assert!(
            text.contains(&format!(
                r#"orderflow_consumer_assigned_partitions{{group="{g}"}} 1"#
            )),
            "{text}"
        );
        left(g);
        assert!(snapshot().iter().all(|a| a.group != g));
    }

    #[test]
    fn cooperative_increments_add_and_remove_partitions() {
        let g = "assignment-test-cooperative";
        subscribed(g, &["a".into()]);
        rebalanced(g, &list(&[("a", 0)]), true);
        rebalanced(g, &list(&[("a", 1)]), true);
        rebalanced(g, &list(&[("a", 0)]), false);
        let a = get(g);
        assert_eq!(a.assigned, 1);
        assert_eq!(a.partitions["a"], BTreeSet::from([1]));
        left(g);
    }
}

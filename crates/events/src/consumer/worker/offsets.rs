//! How a lane acknowledges the records it is done with, and where each
//! partition's offset may move when several lanes share a partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{store_offset, Context};
use crate::inbox::Origin;

/// How a lane acknowledges a record it is done with.
pub(super) enum Acks {
    /// The only lane of its worker: each record's offset is stored as it is
    /// done, since each partition's records are done in order.
    Direct,
    /// One of several lanes: a partition's offset is stored only up to its
    /// first record not yet done by any lane.
    Tracked(Arc<Mutex<Trackers>>),
}

/// The offset trackers of a worker's partitions (one topic), by partition.
pub(super) type Trackers = HashMap<i32, OffsetTracker>;

impl Acks {
    /// `origins` (consecutive records of this lane, in order) are done.
    pub(super) fn done<'a>(&self, ctx: &Context, origins: impl IntoIterator<Item = &'a Origin>) {
        // Where each partition's offset goes now (a worker may serve
        // several partitions; usually there is one).
        let mut upto: Vec<(&Origin, i64)> = Vec::with_capacity(1);
        let mut advance = |o: &'a Origin, offset: i64| match upto
            .iter_mut()
            .find(|(p, _)| p.partition == o.partition && p.topic == o.topic)
        {
            Some(entry) => entry.1 = offset,
            None => upto.push((o, offset)),
        };
        match self {
            Acks::Direct => origins.into_iter().for_each(|o| advance(o, o.offset)),
            Acks::Tracked(trackers) => {
                let mut t = trackers.lock().unwrap_or_else(|e| e.into_inner());
                for o in origins {
                    if let Some(offset) = t.entry(o.partition).or_default().done(o.offset) {
                        advance(o, offset);
                    }
                }
            }
        }
        for (o, offset) in upto {
            store_offset(ctx, &o.topic, o.partition, offset);
        }
    }
}

/// The records of one partition handed to its lanes and not yet done, to
/// find the offset up to which every record is done.
#[derive(Debug)]
pub(super) struct OffsetTracker {
    /// Offsets handed out and not done yet, with how many times (a record
    /// re-delivered after a rewind may still be in flight from before).
    outstanding: BTreeMap<i64, u32>,
    /// The highest offset received since the last rewind.
    highest: i64,
    /// The last offset stored.
    stored: i64,
}

impl Default for OffsetTracker {
    fn default() -> Self {
        Self {
            outstanding: BTreeMap::new(),
            highest: -1,
            stored: -1,
        }
    }
}

impl OffsetTracker {
    /// A record at `offset` was handed to a lane. Records arrive in offset
    /// order, from where the partition's assignment starts; an offset at or
    /// below the highest seen means the partition was re-read from there
    /// (reassignment, seek): what was done beyond it no longer counts until
    /// it is received again.
    pub(super) fn received(&mut self, offset: i64) {
        if offset <= self.highest || self.highest < 0 {
            // Nothing before the first record received counts as ours.
            self.stored = offset - 1;
        }
        self.highest = offset;
        *self.outstanding.entry(offset).or_insert(0) += 1;
    }

    /// The record at `offset` is done. Returns the offset to store when
    /// every record up to it is now done and it is past the last one stored.
    pub(super) fn done(&mut self, offset: i64) -> Option<i64> {
        if let Some(n) = self.outstanding.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&offset);
            }
        }
        let upto = match self.outstanding.keys().next() {
            Some(&first) => (first - 1).min(self.highest),
            None => self.highest,
        };
        (upto > self.stored).then(|| {
            self.stored = upto;
            upto
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(received: impl IntoIterator<Item = i64>) -> OffsetTracker {
        let mut t = OffsetTracker::default();
        for o in received {
            t.received(o);
        }
        t
    }

    #[test]
    fn in_order_completion_stores_each_offset() {
        let mut t = tracker(0..3);
        assert_eq!(t.done(0), Some(0));
        assert_eq!(t.done(1), Some(1));
        assert_eq!(t.done(2), Some(2));
    }

    #[test]
    fn offset_waits_for_the_first_record_not_done() {
        let mut t = tracker(10..15);
        assert_eq!(t.done(12), None, "10 and 11 are still in flight");
        assert_eq!(t.done(11), None, "10 is still in flight");
        assert_eq!(t.done(14), None);
        assert_eq!(t.done(10), Some(12), "10..=12 are done, 13 is not");
        assert_eq!(t.done(13), Some(14));
    }

    #[test]
    fn offset_gaps_do_not_hold_the_offset_back() {
        // Offsets need not be contiguous (compaction, control records).
        let mut t = tracker([3, 7, 20]);
        assert_eq!(t.done(7), None);
        assert_eq!(t.done(3), Some(19), "8..=19 do not exist: 20 came after 7");
        assert_eq!(t.done(20), Some(20));
    }

    #[test]
    fn a_rewind_never_stores_past_what_was_received_again() {
        let mut t = tracker(100..105);
        assert_eq!(t.done(100), Some(100));
        // Reassigned, re-read from 101 while 104 from before is in flight.
        t.received(101);
        t.received(102);
        assert_eq!(t.done(101), None, "the old 101 is still outstanding");
        assert_eq!(t.done(101), Some(101), "both copies of 101 done");
        assert_eq!(t.done(104), None, "the old 104 says nothing of 102");
        assert_eq!(t.done(102), None, "one copy of 102 is still outstanding");
        assert_eq!(t.done(102), Some(102));
        assert_eq!(t.done(103), None, "nothing past 102 was received again");
    }

    #[test]
    fn a_rewind_stores_again_what_is_done_again() {
        let mut t = tracker(0..3);
        for o in 0..3 {
            t.done(o);
        }
        t.received(0);
        assert_eq!(t.done(0), Some(0));
    }
}

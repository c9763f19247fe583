//! The consumer's tuning: workers, lanes, batches, retries.

use std::time::Duration;

/// Consumer tuning.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Attempts for a retryable handler error before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Records buffered per worker (a worker serves one partition, or
    /// several with [`workers_per_topic`](Self::workers_per_topic)).
    pub queue_per_worker: usize,
    /// At most this many records a worker has already received (each
    /// partition's in order) are applied in one transaction, with one inbox
    /// statement for all of them; 1 gives every record a transaction of its
    /// own. Batches cut commits under load and add no wait when the
    /// partition is quiet. Handlers of different keys that lock shared rows
    /// must lock a batch's rows in one order (e.g. sorted), or concurrent
    /// batches can deadlock each other; otherwise keep it at 1.
    pub max_batch: usize,
    /// Lanes per worker: a worker's records are split over this many
    /// lanes by key, and the lanes run concurrently, each in order. Every
    /// record of one key (one order) goes to the same lane, so per-key order
    /// holds; records of different keys may be applied out of offset order.
    /// A partition's offset only advances over records every lane is done
    /// with. Worth more than 1 when a handler waits on something slow
    /// outside the database (an SMTP server): with one lane a worker waits
    /// for each in turn. Each lane holds its own database connection while
    /// it works, so the pool bounds how many work at once. With
    /// [`workers_per_topic`](Self::workers_per_topic) at 0 this is per
    /// partition; at 1, per topic.
    pub lanes_per_worker: usize,
    /// When a handler fails a record of a batch, commit the records before
    /// it instead of rolling the batch back and handling them again.
    /// Without (the default), their effects commit once but their handlers
    /// run twice. Set it when a handler has an effect outside the database
    /// (sending an e-mail) that must not be repeated for another record's
    /// failure. The handlers must then leave nothing of a record they fail,
    /// nor of the records after it, in the transaction, unless they
    /// recognise it when that record comes back: a
    /// [`Handler::handle_batch`] that returns `Err((i, e))` has written the
    /// records before `i` (e.g. it writes once every record is done), and
    /// of the later ones at most effects that applying them again skips
    /// (an e-mail that went out, recorded so that it is not sent twice).
    /// A statement that fails aborts the transaction: then the whole batch
    /// goes back to being applied one record at a time.
    pub keep_applied_on_failure: bool,
    /// The partitions of a topic share this many workers (partition `p`
    /// goes to worker `p % n`); 0 gives every partition a worker of its own.
    /// A worker applies its partitions' records in the order it received
    /// them, so each partition stays in order, and its batches take records
    /// of all its partitions: fewer, larger transactions when a topic has
    /// many partitions and little traffic on each. The price: a record
    /// waiting for a retry holds up the other partitions of its worker.
    pub workers_per_topic: usize,
    /// Event types dead-lettered (reason `quarantined`) instead of handled:
    /// an operator's switch while a handler is known to be wrong, so the
    /// partition keeps flowing; `orderctl dlq redrive` sends them back once
    /// it is fixed, and the inbox applies each once.
    pub quarantine: Vec<crate::events::EventType>,
    /// Record every applied event in the inbox and skip one recorded
    /// before: what makes a redelivery harmless. Turn it off only for
    /// handlers whose writes are idempotent by themselves (a projection
    /// keyed by event id written with `ON CONFLICT DO NOTHING`): each event
    /// then costs one row less, and a redelivered one is handed to its
    /// handler again, which writes nothing new.
    pub use_inbox: bool,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            queue_per_worker: 256,
            max_batch: 32,
            lanes_per_worker: 1,
            keep_applied_on_failure: false,
            workers_per_topic: 0,
            quarantine: Vec::new(),
            use_inbox: true,
        }
    }
}

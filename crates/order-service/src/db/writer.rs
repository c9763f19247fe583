//! Group commit for new orders. Each `POST /orders` that is not answered
//! from its idempotency key hands its order to an [`OrderWriter`] and waits
//! for it to be committed. Orders that arrive while a lane is busy are
//! written together: one statement each, one transaction and one commit
//! (one WAL flush, one outbox `NOTIFY`) for the lot. A request is still
//! answered only after its own order is committed.
//!
//! Alone, an order is written as before: one statement, no transaction.
//! When a statement of a batch fails, the batch is rolled back and each of
//! its orders is written on its own, so one bad order fails only its own
//! request. When the commit fails the outcome is unknown, and every order
//! of the batch gets the error (as a single request would): a retry with
//! the same `Idempotency-Key` answers from the order if it was committed.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::db::{Inserted, NewOrder, StoreError};

/// Most orders in one transaction.
pub const MAX_BATCH: usize = 64;

/// Lanes writing at once (each holds a pooled connection while it writes).
pub const LANES: usize = 2;

/// What an order's request gets back.
type Outcome = Result<Inserted, StoreError>;

struct Job {
    order: Arc<NewOrder>,
    done: oneshot::Sender<Outcome>,
}

/// Hands new orders to the writing lanes.
#[derive(Clone)]
pub struct OrderWriter {
    jobs: mpsc::Sender<Job>,
}

impl OrderWriter {
    /// Starts [`LANES`] lanes writing to `pool`. They stop when the last
    /// clone of the writer is dropped.
    pub fn spawn(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * LANES);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..LANES {
            tokio::spawn(lane(pool.clone(), queue.clone()));
        }
        Self { jobs }
    }

    /// Writes `order`, returning once it is committed
    /// ([`Inserted::Created`]), or what kept it from being written.
    pub async fn create(&self, order: Arc<NewOrder>) -> Outcome {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job { order, done })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// Takes what is queued (up to [`MAX_BATCH`]) and writes it, until the
/// queue is closed.
async fn lane(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        write(&pool, batch).await;
    }
}

async fn write(pool: &PgPool, batch: Vec<Job>) {
    if batch.len() > 1 {
        match together(pool, &batch).await {
            Together::Committed(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok(outcome));
                }
                return;
            }
            Together::CommitFailed(e) => {
                tracing::warn!(error = %e, orders = batch.len(), "committing a batch of new orders failed");
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Database(same_error(&e))));
                }
                return;
            }
            Together::RolledBack(e) => {
                tracing::debug!(error = %e, orders = batch.len(), "a batch of new orders failed; writing them one by one");
            }
        }
    }
    for job in batch {
        let outcome = alone(pool, &job.order).await;
        let _ = job.done.send(outcome);
    }
}

enum Together {
    Committed(Vec<Inserted>),
    /// Nothing was written.
    RolledBack(StoreError),
    /// The outcome is unknown.
    CommitFailed(sqlx::Error),
}

async fn together(pool: &PgPool, batch: &[Job]) -> Together {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return Together::RolledBack(e.into()),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        match job.order.insert(&mut tx).await {
            Ok(inserted) => outcomes.push(inserted),
            // Dropping the transaction rolls it back.
            Err(e) => return Together::RolledBack(e),
        }
    }
    match tx.commit().await {
        Ok(()) => Together::Committed(outcomes),
        Err(e) => Together::CommitFailed(e),
    }
}

async fn alone(pool: &PgPool, order: &NewOrder) -> Outcome {
    let mut conn = pool.acquire().await?;
    order.insert(&mut conn).await
}

/// An error like `e` for each request of a failed batch (`sqlx::Error` is
/// not `Clone`): an unreachable database stays a 503 for every request.
fn same_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

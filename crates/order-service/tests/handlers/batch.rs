//! Records of several orders applied as one batch end as if applied one by
//! one; a bad record is named and nothing of the batch is written.

use super::*;

/// The events of a batch for two orders (`a` gets paid before its stock is
/// reserved; `b` only reserved), in record order.
fn batch_for(a: (&OrderRow, &Envelope), b: (&OrderRow, &Envelope)) -> Vec<ConsumedEvent> {
    vec![
        consumed(a.1, paid_event(a.0, format!("pay-{}", a.0.id))),
        consumed(b.1, reserved_event(b.0)),
        consumed(a.1, reserved_event(a.0)),
    ]
}

/// Applies `batch` with one `handle_batch` call in a transaction, committed
/// when it succeeds and rolled back when it fails.
async fn apply_batch(
    pool: &PgPool,
    h: &OnSagaEvents,
    batch: &[ConsumedEvent],
) -> Result<(), (usize, HandlerError)> {
    let span = tracing::Span::none();
    let items: Vec<(&ConsumedEvent, &tracing::Span)> = batch.iter().map(|e| (e, &span)).collect();
    let mut tx = pool.begin().await.expect("tx");
    let result = h.handle_batch(&mut tx, &items).await;
    match result {
        Ok(()) => tx.commit().await.expect("commit"),
        Err(_) => tx.rollback().await.expect("rollback"),
    }
    result
}

/// Status, payment id, timeline and emitted event types of order `id`.
async fn outcome(pool: &PgPool, id: Uuid) -> (Status, Option<String>, Vec<String>, Vec<String>) {
    let row = order(pool, id).await;
    let mut c = pool.acquire().await.expect("conn");
    let timeline = db::timeline(&mut c, id)
        .await
        .expect("timeline")
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    let payment = row.payment_id.map(|p| p.replace(&id.to_string(), "<id>"));
    (row.status, payment, timeline, emitted(pool, id).await)
}

#[tokio::test]
async fn a_batch_ends_as_its_records_applied_one_by_one() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (a1, a1_created) = new_order(&pool).await;
    let (b1, b1_created) = new_order(&pool).await;
    let (a2, a2_created) = new_order(&pool).await;
    let (b2, b2_created) = new_order(&pool).await;

    // One transaction, one call for the three records...
    let batch = batch_for((&a1, &a1_created), (&b1, &b1_created));
    apply_batch(&pool, &h, &batch)
        .await
        .map_err(|(i, e)| format!("record {i}: {e}"))
        .expect("batch applied");
    // ...and the same records one by one, for two other orders.
    for event in batch_for((&a2, &a2_created), (&b2, &b2_created)) {
        let mut tx = pool.begin().await.expect("tx");
        h.handle(&mut tx, &event).await.expect("applied");
        tx.commit().await.expect("commit");
    }

    let (a_batched, a_alone) = (outcome(&pool, a1.id).await, outcome(&pool, a2.id).await);
    assert_eq!(a_batched, a_alone);
    assert_eq!(a_batched.0, Status::Paid, "paid, then reserved: PAID");
    assert_eq!(a_batched.1.as_deref(), Some("pay-<id>"));
    assert_eq!(
        a_batched.2,
        [
            "OrderCreated",
            "PaymentProcessed",
            "InventoryReserved",
            "OrderConfirmed"
        ]
    );
    assert_eq!(a_batched.3, ["OrderCreated", "OrderConfirmed"]);
    let (b_batched, b_alone) = (outcome(&pool, b1.id).await, outcome(&pool, b2.id).await);
    assert_eq!(b_batched, b_alone);
    assert_eq!(b_batched.0, Status::InventoryReserved);
}

#[tokio::test]
async fn a_batch_names_the_record_of_an_unknown_order_and_writes_nothing() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (a, a_created) = new_order(&pool).await;
    let (b, b_created) = new_order(&pool).await;
    let mut batch = batch_for((&a, &a_created), (&b, &b_created));
    // The order of the second record does not exist.
    let (ghost, ghost_created) = order_row(None);
    batch[1] = batch_for((&ghost, &ghost_created), (&ghost, &ghost_created)).remove(1);
    let (at, e) = apply_batch(&pool, &h, &batch)
        .await
        .expect_err("an unknown order fails the batch");
    assert_eq!(at, 1);
    assert!(
        matches!(&e, HandlerError::Permanent(m) if m.contains("unknown order")),
        "{e:?}"
    );
    assert_eq!(order(&pool, a.id).await.status, Status::Pending);
    assert_eq!(emitted(&pool, a.id).await, ["OrderCreated"]);
}

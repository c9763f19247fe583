//! A cancellation is a request until the shipping service answers: the
//! order waits in `CANCELLING`, then is cancelled (`ShippingCancelled`) or
//! resumes where it was (`ShippingCancellationRejected`).

use super::*;
use order_service::db::{Cause, Clock};
use order_service::domain::saga::ReasonCode;

/// Requests the customer's cancellation of `o`, as `POST /orders/{id}/cancel`
/// does.
async fn request_cancel(pool: &PgPool, id: Uuid) {
    let mut tx = pool.begin().await.expect("tx");
    let mut o = db::fetch_order(&mut tx, id, true)
        .await
        .expect("fetch")
        .expect("exists");
    let t = db::cancel_request(&o, ReasonCode::CustomerRequest);
    let clock = Clock {
        now: Utc::now(),
        timeout: TimeDelta::minutes(5),
    };
    db::apply_transition(
        &mut tx,
        &TopicCatalog::with_prefix(""),
        &mut o,
        &t,
        order_service::api::CUSTOMER_CANCEL_REASON,
        &Cause::Local {
            trace: TraceContext::new_root(),
        },
        &clock,
    )
    .await
    .expect("apply");
    tx.commit().await.expect("commit");
}

async fn payload_of(pool: &PgPool, id: Uuid, event_type: &str) -> serde_json::Value {
    sqlx::query_scalar(
        "SELECT envelope->'data' FROM outbox WHERE partition_key = $1 AND event_type = $2",
    )
    .bind(id.to_string())
    .bind(event_type)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("{event_type} of {id}: {e}"))
}

/// Reserved and paid.
async fn paid_order(pool: &PgPool, h: &OnSagaEvents) -> (OrderRow, Envelope) {
    let (o, created) = new_order(pool).await;
    deliver(pool, h, &created, reserved_event(&o))
        .await
        .expect("reserved");
    deliver(pool, h, &created, paid_event(&o, "pay-1".into()))
        .await
        .expect("paid");
    assert_eq!(order(pool, o.id).await.status, Status::Paid);
    (o, created)
}

fn shipping_created(oid: &str) -> Event {
    ShippingCreated {
        order_id: oid.into(),
        shipment_id: "s-1".into(),
        tracking_number: "OF000000000001".into(),
        carrier: "c".into(),
        label_url: "/l".into(),
        email: "a@b.cd".into(),
        recipient_name: "A".into(),
        items: stock("SKU-1"),
    }
    .into()
}

#[tokio::test]
async fn a_confirmed_request_cancels_with_the_status_it_was_asked_in() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (o, created) = paid_order(&pool, &h).await;
    let oid = o.id.to_string();

    request_cancel(&pool, o.id).await;
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Cancelling);
    assert_eq!(row.cancel_from.as_deref(), Some("PAID"));
    assert_eq!(row.reason_code.as_deref(), Some("CUSTOMER_REQUEST"));
    let request = payload_of(&pool, o.id, "OrderCancellationRequested").await;
    assert_eq!(request["reasonCode"], "CUSTOMER_REQUEST");
    assert_eq!(
        request["reason"],
        order_service::api::CUSTOMER_CANCEL_REASON
    );

    // A fact arriving meanwhile is recorded, the status waits.
    deliver(&pool, &h, &created, shipping_created(&oid))
        .await
        .expect("created");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Cancelling);
    assert!(row.shipping_created);

    deliver(
        &pool,
        &h,
        &created,
        ShippingCancelled {
            order_id: oid.clone(),
            shipment_id: Some("s-1".into()),
            reason_code: "CUSTOMER_REQUEST".into(),
        }
        .into(),
    )
    .await
    .expect("confirmed");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Cancelled);
    assert_eq!(
        row.reason.as_deref(),
        Some(order_service::api::CUSTOMER_CANCEL_REASON)
    );
    let cancelled = payload_of(&pool, o.id, "OrderCancelled").await;
    assert_eq!(cancelled["previousStatus"], "PAID");
    assert_eq!(cancelled["reasonCode"], "CUSTOMER_REQUEST");
    assert_eq!(
        emitted(&pool, o.id).await,
        vec![
            "OrderCreated",
            "OrderConfirmed",
            "OrderCancellationRequested",
            "OrderCancelled"
        ]
    );
}

#[tokio::test]
async fn a_rejected_request_resumes_the_saga_without_repeating_it() {
    let db = database().await;
    let pool = db.pool.clone();
    let h = handler();
    let (o, created) = paid_order(&pool, &h).await;
    let oid = o.id.to_string();
    request_cancel(&pool, o.id).await;

    // The parcel left before the request reached the warehouse.
    for event in [
        shipping_created(&oid),
        ShippingDispatched {
            order_id: oid.clone(),
            shipment_id: "s-1".into(),
            tracking_number: "OF000000000001".into(),
            dispatched_at: 0,
        }
        .into(),
        NotificationSent {
            order_id: oid.clone(),
            notification_id: "n-1".into(),
            kind: ORDER_CONFIRMATION.into(),
            recipient: "a@b.cd".into(),
            subject: "s".into(),
        }
        .into(),
    ] {
        deliver(&pool, &h, &created, event).await.expect("fact");
        assert_eq!(order(&pool, o.id).await.status, Status::Cancelling);
    }
    deliver(
        &pool,
        &h,
        &created,
        ShippingCancellationRejected {
            order_id: oid.clone(),
            shipment_id: "s-1".into(),
            tracking_number: "OF000000000001".into(),
            shipment_status: "DISPATCHED".into(),
            reason_code: "ALREADY_DISPATCHED".into(),
        }
        .into(),
    )
    .await
    .expect("rejected");
    let row = order(&pool, o.id).await;
    assert_eq!(row.status, Status::Shipped);
    assert_eq!(row.reason, None);
    assert_eq!(row.reason_code, None);
    assert_eq!(row.cancel_from, None);
    assert_eq!(
        emitted(&pool, o.id).await,
        vec![
            "OrderCreated",
            "OrderConfirmed",
            "OrderCancellationRequested",
            "OrderShipped"
        ]
    );
    // A late answer changes nothing.
    deliver(
        &pool,
        &h,
        &created,
        ShippingCancelled {
            order_id: oid,
            shipment_id: None,
            reason_code: "CUSTOMER_REQUEST".into(),
        }
        .into(),
    )
    .await
    .expect("late");
    assert_eq!(order(&pool, o.id).await.status, Status::Shipped);
}

//! Deadlines that fit each step of the saga (`ORDER_SAGA_TIMEOUT` 3 s here):
//! before payment a stuck saga is cancelled and compensated; after payment
//! it is never refunded because a later step is slow. With the SMTP server
//! down past the deadline the paid order is marked stalled, keeps its
//! payment and shipment, and ships once the server is back.

use orderflow_e2e::client::count_events;
use orderflow_e2e::{OrderBody, Service, Stack, StackOptions, Status};

fn short_deadline() -> StackOptions {
    StackOptions {
        saga_timeout: Some("3s".into()),
        deadline_check_interval: Some("500ms".into()),
        ..StackOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_e_mail_outage_past_the_deadline_stalls_the_saga_and_refunds_nothing() {
    let stack = Stack::start(short_deadline()).await;
    let sku = stack.sku("STALL");
    stack.set_stock(&sku, 5).await;
    stack.stop_smtp().await;

    let id = stack.create_order(&OrderBody::new(&sku, 1)).await;
    // Paid and with a shipment, the saga waits for the e-mail; the
    // deadline passes and the sweeper marks it stalled instead of
    // cancelling it (which it did before, refunding the payment).
    let order = stack
        .wait_for_order(&id, "the paid order to be marked stalled", |o| {
            o.status == Status::ShippingCreated && o.stalled_since.is_some()
        })
        .await;
    assert!(order.reason.is_none(), "{order:?}");
    let payment = stack.payment(&id).await.expect(200);
    assert_eq!(payment.json["status"], "PROCESSED", "{}", payment.text);
    let shipment = stack.shipment(&id).await.expect(200);
    assert_eq!(shipment.json["status"], "CREATED", "{}", shipment.text);
    let events = stack.timeline(&id).await;
    assert_eq!(count_events(&events, "OrderCancelled"), 0, "{events:#?}");
    let metrics = stack.get(Service::Order, "/metrics").await.expect(200);
    assert!(
        metrics
            .text
            .contains(r#"orderflow_sagas_stalled{status="SHIPPING_CREATED"} 1"#),
        "{}",
        metrics.text
    );

    // The mail server is back: the e-mail goes out, the order ships, and
    // the stalled mark is gone. Nothing was refunded or cancelled.
    stack.start_smtp().await;
    let order = stack.wait_status(&id, "SHIPPED").await;
    assert!(order.stalled_since.is_none(), "{order:?}");
    let payment = stack.payment(&id).await.expect(200);
    assert_eq!(payment.json["status"], "PROCESSED", "{}", payment.text);
    let events = stack.timeline(&id).await;
    assert_eq!(count_events(&events, "OrderCancelled"), 0, "{events:#?}");
    assert_eq!(count_events(&events, "OrderShipped"), 1, "{events:#?}");
    let mails = stack
        .wait_for_mails("the confirmation e-mail", |m| {
            m.iter().any(|m| m.confirms(&id))
        })
        .await;
    assert_eq!(mails.iter().filter(|m| m.confirms(&id)).count(), 1);
    assert!(!mails.iter().any(|m| m.is_cancellation()), "{mails:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_stuck_before_payment_is_cancelled_and_compensated() {
    let stack = Stack::start(short_deadline()).await;
    let sku = stack.sku("TIMEOUT");
    stack.set_stock(&sku, 5).await;
    // The customer's card is on file before the payment service goes.
    let body = OrderBody::new(&sku, 2);
    stack
        .payment_method(&body.customer_id, &body.payment_token)
        .await;
    let status = stack.terminate(Service::Payment).await;
    assert!(status.success(), "payment exited with {status}");

    let id = stack.create_order(&body).await;
    let order = stack.wait_status(&id, "CANCELLED").await;
    assert_eq!(
        order.reason_code.as_deref(),
        Some("SAGA_TIMEOUT"),
        "{order:?}"
    );
    assert!(order.stalled_since.is_none(), "{order:?}");
    // The reservation is released.
    stack.wait_for_stock(&sku, 5, 0, Some(0)).await;

    // Payment comes back and finds both the reservation and the
    // cancellation, in either order: the customer ends up not charged
    // (voided before a charge, or refunded after one).
    stack.start_service(Service::Payment).await;
    stack
        .wait_for_json(
            Service::Payment,
            &format!("/payments/{id}"),
            "payment to end voided or refunded",
            |p| p["status"] == "VOIDED" || p["status"] == "REFUNDED",
        )
        .await;
}

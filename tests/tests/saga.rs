//! The saga end to end, one isolated stack per test: the happy path, the
//! two automatic compensations (out of stock, payment declined) and a
//! customer cancellation before shipping.

use orderflow_e2e::client::{assert_causal_chain, count_events};
use orderflow_e2e::{OrderBody, Service, Stack, Status, TimelineEventJson};

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

fn filled(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn strip_angle(s: &str) -> &str {
    s.trim().trim_start_matches('<').trim_end_matches('>')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn happy_path_ships_then_delivers_with_a_complete_causal_timeline() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("HAPPY");
    stack.set_stock(&sku, 10).await;

    let body = OrderBody::new(&sku, 3);
    let id = stack.create_order(&body).await;
    let order = stack.wait_status(&id, "SHIPPED").await;
    assert_eq!(order.order_id.to_string(), id, "{order:?}");
    assert_eq!(order.total, body.total(), "total of 3 x 1999: {order:?}");
    assert!(filled(&order.tracking_number), "{order:?}");
    assert!(filled(&order.payment_id), "{order:?}");

    // Reserved, not yet shipped.
    stack.wait_for_stock(&sku, 7, 3, Some(0)).await;
    let shipment = stack.shipment(&id).await.expect(200);
    assert_eq!(shipment.json["status"], "CREATED", "{}", shipment.text);
    assert_eq!(
        shipment.json["trackingNumber"].as_str(),
        order.tracking_number.as_deref(),
        "{}",
        shipment.text
    );

    // Dispatch: the reserved units leave the warehouse.
    let r = stack.dispatch(&id).await;
    assert!(is_2xx(r.status), "{}", r.describe());
    assert_eq!(stack.shipment(&id).await.json["status"], "DISPATCHED");
    stack.wait_for_stock(&sku, 7, 0, Some(3)).await;

    // Deliver.
    let r = stack.deliver(&id).await;
    assert!(is_2xx(r.status), "{}", r.describe());
    assert_eq!(stack.shipment(&id).await.json["status"], "DELIVERED");
    let order = stack.wait_status(&id, "DELIVERED").await;
    assert_eq!(
        order.tracking_number.as_deref(),
        shipment.json["trackingNumber"].as_str()
    );

    let events = stack
        .wait_for_events(
            &id,
            &[
                "OrderCreated",
                "InventoryReserved",
                "PaymentProcessed",
                "OrderConfirmed",
                "ShippingCreated",
                "NotificationSent",
                "OrderShipped",
                "ShippingDispatched",
                "ShippingDelivered",
                "OrderDelivered",
            ],
        )
        .await;
    assert_eq!(events[0].event_type, "OrderCreated", "{events:#?}");
    assert_causal_chain(&id, &events);
    assert_eq!(count_events(&events, "PaymentProcessed"), 1, "{events:#?}");
    for e in &events {
        assert!(
            !e.source.is_empty() && !e.timestamp.is_empty(),
            "event without source/timestamp: {e:?}"
        );
    }

    // Exactly one payment.
    let payment = stack.payment(&id).await.expect(200);
    assert_eq!(payment.json["status"], "PROCESSED", "{}", payment.text);
    assert_eq!(
        payment.json["paymentId"].as_str(),
        order.payment_id.as_deref(),
        "{}",
        payment.text
    );
    assert_eq!(payment.json["amount"], body.total(), "{}", payment.text);
    let rows = stack
        .count(
            Service::Payment,
            "SELECT count(*) FROM payments WHERE order_id::text = $1",
            &id,
        )
        .await;
    assert_eq!(rows, 1, "payment rows for {id}");

    // Exactly one e-mail, to the customer, naming the order.
    let mails = stack.mails();
    assert_eq!(
        mails.len(),
        1,
        "expected exactly one e-mail: {:#?}",
        mails.iter().map(|m| m.describe()).collect::<Vec<_>>()
    );
    let mail = &mails[0];
    assert!(mail.is_to(&body.email), "{}", mail.describe());
    assert!(
        mail.mentions(&id),
        "neither subject nor body names {id}: {} body={:?}",
        mail.describe(),
        mail.body
    );
    assert!(!mail.is_cancellation(), "{}", mail.describe());
    assert!(
        mail.message_id.contains(&id),
        "Message-ID should be <kind.orderId@orderflow>: {}",
        mail.describe()
    );

    // The notification service recorded that very e-mail.
    let n = stack.notifications(&id).await.expect(200);
    let list = n.json["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "{}", n.text);
    assert_eq!(
        strip_angle(list[0]["messageId"].as_str().unwrap_or_default()),
        strip_angle(&mail.message_id),
        "{}",
        n.text
    );
    assert_eq!(
        list[0]["subject"].as_str(),
        Some(mail.subject.as_str()),
        "{}",
        n.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_stock_cancels_without_payment_and_leaves_stock_alone() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("SHORT");
    stack.set_stock(&sku, 1).await;

    let id = stack.create_order(&OrderBody::new(&sku, 2)).await;
    let order = stack.wait_status(&id, "CANCELLED").await;
    assert_eq!(
        order.reason_code.as_deref(),
        Some("OUT_OF_STOCK"),
        "{order:?}"
    );
    assert!(filled(&order.reason), "{order:?}");

    let events = stack
        .wait_for_events(
            &id,
            &[
                "OrderCreated",
                "InventoryReservationFailed",
                "OrderCancelled",
            ],
        )
        .await;
    assert_causal_chain(&id, &events);
    assert_eq!(count_events(&events, "PaymentProcessed"), 0, "{events:#?}");
    assert_eq!(count_events(&events, "InventoryReserved"), 0, "{events:#?}");

    let payment = stack.payment(&id).await;
    match payment.status {
        404 => {}
        200 => {
            assert_eq!(payment.json["status"], "VOIDED", "{}", payment.describe());
            assert_eq!(payment.json["amount"], 0, "{}", payment.describe());
        }
        _ => panic!("GET /payments: {}", payment.describe()),
    }
    let rows = stack
        .count(
            Service::Payment,
            "SELECT count(*) FROM payments WHERE order_id::text = $1 AND status = 'PROCESSED'",
            &id,
        )
        .await;
    assert_eq!(rows, 0, "a processed payment row exists for {id}");

    let inv = stack.inventory(&sku).await;
    assert_eq!(inv["available"], 1, "{inv}");
    assert_eq!(inv["reserved"], 0, "{inv}");
    assert_eq!(stack.stock_row(&sku).await, Some((1, 0, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_payment_cancels_releases_stock_and_mails_the_customer() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("DECLINE");
    stack.set_stock(&sku, 5).await;

    let body = OrderBody::new(&sku, 2).token("tok_chargeDeclined");
    let id = stack.create_order(&body).await;
    let order = stack.wait_status(&id, "CANCELLED").await;
    assert_eq!(
        order.reason_code.as_deref(),
        Some("PAYMENT_DECLINED"),
        "{order:?}"
    );
    assert!(filled(&order.reason), "{order:?}");

    stack.wait_for_stock(&sku, 5, 0, Some(0)).await;
    let events = stack
        .wait_for_events(
            &id,
            &[
                "OrderCreated",
                "InventoryReserved",
                "PaymentFailed",
                "OrderCancelled",
                "InventoryReleased",
            ],
        )
        .await;
    assert_causal_chain(&id, &events);
    assert_eq!(count_events(&events, "PaymentProcessed"), 0, "{events:#?}");
    assert_eq!(count_events(&events, "PaymentFailed"), 1, "{events:#?}");

    let payment = stack.payment(&id).await.expect(200);
    assert_eq!(payment.json["status"], "DECLINED", "{}", payment.text);

    let mails = stack
        .wait_for_mails("a cancellation e-mail naming the order", |mails| {
            mails
                .iter()
                .any(|m| m.is_cancellation() && m.subject.contains(&id))
        })
        .await;
    let mail = mails
        .iter()
        .find(|m| m.is_cancellation() && m.subject.contains(&id))
        .expect("found above");
    assert!(mail.is_to(&body.email), "{}", mail.describe());
    assert_eq!(
        mails.iter().filter(|m| m.mentions(&id)).count(),
        1,
        "one e-mail only: {:?}",
        mails.iter().map(|m| m.describe()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_cancel_before_shipping_refunds_releases_and_mails() {
    let stack = Stack::start_default().await;
    let sku = stack.sku("CANCEL");
    stack.set_stock(&sku, 5).await;

    // Without the notification service the saga stops at SHIPPING_CREATED.
    let status = stack.terminate(Service::Notification).await;
    assert!(
        status.success(),
        "notification-service should exit 0 on SIGTERM, got {status}"
    );

    let body = OrderBody::new(&sku, 2);
    let id = stack.create_order(&body).await;
    stack.wait_status(&id, "SHIPPING_CREATED").await;
    stack.wait_for_stock(&sku, 3, 2, Some(0)).await;

    let r = stack.cancel(&id).await;
    assert_eq!(r.status, 202, "{}", r.describe());
    // A request until the shipping service, the authority on dispatch,
    // confirms that the parcel will not leave.
    assert_eq!(r.json["status"], "CANCELLING", "{}", r.describe());
    let order = stack.wait_status(&id, "CANCELLED").await;
    assert_eq!(
        order.reason_code.as_deref(),
        Some("CUSTOMER_REQUEST"),
        "{order:?}"
    );
    assert!(filled(&order.reason), "{order:?}");

    // Compensations: refund, release, shipment cancelled.
    stack
        .wait_for_json(
            Service::Payment,
            &format!("/payments/{id}"),
            "the payment to be refunded",
            |p| p["status"] == "REFUNDED",
        )
        .await;
    stack.wait_for_stock(&sku, 5, 0, Some(0)).await;
    stack
        .wait_for_json(
            Service::Shipping,
            &format!("/shipments/{id}"),
            "the shipment to be cancelled",
            |s| s["status"] == "CANCELLED",
        )
        .await;
    let events = stack
        .wait_for_events(
            &id,
            &[
                "OrderCancellationRequested",
                "ShippingCancelled",
                "OrderCancelled",
                "PaymentRefunded",
                "InventoryReleased",
            ],
        )
        .await;
    assert_causal_chain(&id, &events);
    assert_eq!(count_events(&events, "OrderCancelled"), 1, "{events:#?}");
    assert_eq!(count_events(&events, "PaymentRefunded"), 1, "{events:#?}");
    let rows = stack
        .count(
            Service::Payment,
            "SELECT count(*) FROM payments WHERE order_id::text = $1",
            &id,
        )
        .await;
    assert_eq!(rows, 1, "payment rows for {id}");

    // The notification service catches up and sends the cancellation.
    stack.start_service(Service::Notification).await;
    let mails = stack
        .wait_for_mails("the cancellation e-mail", |mails| {
            mails.iter().any(|m| m.is_cancellation() && m.mentions(&id))
        })
        .await;
    let mail = mails
        .iter()
        .find(|m| m.is_cancellation() && m.mentions(&id))
        .expect("found above");
    assert!(mail.is_to(&body.email), "{}", mail.describe());
    assert!(mail.subject.contains(&id), "{}", mail.describe());

    // A second cancel is accepted and changes nothing.
    let emitted = |events: &[TimelineEventJson]| {
        events
            .iter()
            .filter(|e| e.source == "order-service")
            .count()
    };
    let before = emitted(&stack.timeline(&id).await);
    let r = stack.cancel(&id).await;
    assert_eq!(r.status, 200, "repeated cancel: {}", r.describe());
    let after_events = stack.timeline(&id).await;
    assert_eq!(
        emitted(&after_events),
        before,
        "the repeated cancel emitted something: {after_events:#?}"
    );
    assert_eq!(count_events(&after_events, "OrderCancelled"), 1);
    assert_eq!(
        stack.order(&id).await.reason_code.as_deref(),
        Some("CUSTOMER_REQUEST")
    );

    // A shipped order cannot be cancelled.
    let shipped = stack.create_order(&OrderBody::new(&sku, 1)).await;
    stack.wait_status(&shipped, "SHIPPED").await;
    let r = stack.cancel(&shipped).await;
    assert_eq!(r.status, 409, "{}", r.describe());
    r.expect_json_error();
    assert_eq!(r.code(), "not_cancellable", "{}", r.describe());
    assert_eq!(stack.order(&shipped).await.status, Status::Shipped);
}

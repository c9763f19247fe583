use super::read::message_id;
use super::*;

fn count(invariants: &[Invariant], id: &str) -> usize {
    invariants
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("no invariant {id}"))
        .violations
        .len()
}

fn order(status: &str, reason: Option<&str>, payment_id: Option<&str>) -> Order {
    Order {
        status: status.into(),
        reason: reason.map(str::to_owned),
        stalled: false,
        payment_id: payment_id.map(str::to_owned),
    }
}

fn notification(order: &str, kind: &str, message_id: &str) -> Notification {
    Notification {
        order: order.into(),
        kind: kind.into(),
        status: "SENT".into(),
        message_id: message_id.into(),
    }
}

/// One order shipped cleanly, one cancelled cleanly after its payment, of
/// SKU `S` (10), each told by e-mail.
fn clean() -> (State, Expected) {
    let mut s = State::default();
    let line = vec![("S".to_owned(), 2)];
    s.orders
        .insert("o1".into(), order("DELIVERED", None, Some("p1")));
    s.payments
        .insert("o1".into(), ("PROCESSED".into(), "p1".into()));
    s.shipments
        .insert("o1".into(), ("DELIVERED".into(), line.clone()));
    s.orders.insert(
        "o2".into(),
        order("CANCELLED", Some("CUSTOMER_REQUEST"), Some("p2")),
    );
    s.payments
        .insert("o2".into(), ("REFUNDED".into(), "p2".into()));
    s.shipments.insert("o2".into(), ("CANCELLED".into(), line));
    s.stock.insert("S".into(), (8, 0, 2));
    for (o, t) in [("o1", "PaymentProcessed"), ("o2", "PaymentRefunded")] {
        s.events
            .insert((o.into(), t.into()), BTreeSet::from(["e1".to_owned()]));
    }
    s.notifications = vec![
        notification(
            "o1",
            "ORDER_CONFIRMATION",
            "<order-confirmation.o1@orderflow>",
        ),
        notification("o2", "ORDER_CANCELLED", "<order-cancelled.o2@orderflow>"),
    ];
    s.mailbox = s
        .notifications
        .iter()
        .map(|n| n.message_id.clone())
        .collect();
    let e = Expected {
        accepted: Accepted::Ids(BTreeSet::from(["o1".to_owned(), "o2".to_owned()])),
        initial: BTreeMap::from([("S".to_owned(), 10)]),
        poison: Vec::new(),
        groups: BTreeMap::new(),
    };
    (s, e)
}

#[test]
fn a_clean_run_breaks_nothing() {
    let (s, e) = clean();
    let all = check(&s, &e);
    assert!(all.iter().all(|i| i.violations.is_empty()), "{all:?}");
    let by_count = Expected {
        accepted: Accepted::Count(2),
        ..e
    };
    let all = check(&s, &by_count);
    assert!(all.iter().all(|i| i.violations.is_empty()), "{all:?}");
}

#[test]
fn every_broken_promise_is_counted() {
    let (mut s, mut e) = clean();
    // Lost, and unfinished.
    let Accepted::Ids(ids) = &mut e.accepted else {
        unreachable!()
    };
    ids.insert("lost".into());
    ids.insert("o3".into());
    s.orders.insert("o3".into(), order("PAID", None, None));
    // Cancelled and refunded, yet the parcel left.
    s.shipments.get_mut("o2").expect("o2").0 = "DISPATCHED".into();
    // Charged twice.
    s.events
        .get_mut(&("o1".into(), "PaymentProcessed".into()))
        .expect("o1")
        .insert("e2".into());
    // Two distinct confirmation e-mails, the second never recorded.
    s.mailbox.push("<order-confirmation.o1@orderflow-b>".into());
    // A unit gone missing, and a SKU nobody stocked.
    s.stock.insert("S".into(), (7, 0, 2));
    s.stock.insert("X".into(), (1, 0, 0));
    // A real event dead-lettered, and poison nobody dead-lettered.
    s.dead_letters
        .push(("t".into(), 0, 5, "payment-service".into()));
    e.poison = vec![Poisoned {
        topic: "t".into(),
        partition: 1,
        offset: 9,
    }];
    e.groups = BTreeMap::from([("t".to_owned(), vec!["payment-service".to_owned()])]);
    let all = check(&s, &e);
    assert_eq!(count(&all, "no_accepted_order_lost"), 1);
    assert_eq!(count(&all, "every_saga_finished"), 1);
    assert_eq!(count(&all, "never_shipped_and_cancelled"), 1);
    assert_eq!(count(&all, "effects_at_most_once"), 1);
    assert_eq!(count(&all, "emails_at_most_once_per_kind"), 1);
    assert_eq!(count(&all, "emails_recorded_and_received"), 1);
    assert_eq!(count(&all, "stock_conserved"), 2);
    assert_eq!(count(&all, "dead_letters_accounted_for"), 2);
}

#[test]
fn a_shipped_order_must_be_charged_with_its_payment_and_a_cancelled_one_not() {
    let (mut s, e) = clean();
    s.payments
        .insert("o1".into(), ("REFUNDED".into(), "p1".into()));
    s.payments
        .insert("o2".into(), ("PROCESSED".into(), "p2".into()));
    let all = check(&s, &e);
    assert_eq!(count(&all, "charged_iff_shipped"), 2);

    let (mut s, e) = clean();
    s.orders.get_mut("o1").expect("o1").payment_id = Some("p-other".into());
    s.payments
        .insert("ghost".into(), ("PROCESSED".into(), "p9".into()));
    let all = check(&s, &e);
    assert_eq!(count(&all, "charged_iff_shipped"), 1, "{all:?}");
    assert_eq!(count(&all, "no_charge_without_order"), 1);
}

#[test]
fn an_outcome_needs_its_shipment_and_its_e_mail() {
    let (mut s, e) = clean();
    s.shipments.remove("o1");
    s.notifications.retain(|n| n.order != "o2");
    let all = check(&s, &e);
    assert_eq!(count(&all, "shipped_with_shipment"), 1);
    assert_eq!(count(&all, "outcome_emailed"), 1);
    // The Maildir holds o2's e-mail, which is no longer recorded.
    assert_eq!(count(&all, "emails_recorded_and_received"), 1);
}

#[test]
fn a_count_of_orders_must_match_exactly() {
    let (s, mut e) = clean();
    e.accepted = Accepted::Count(3);
    assert_eq!(count(&check(&s, &e), "no_accepted_order_lost"), 1);
    e.accepted = Accepted::Count(1);
    assert_eq!(count(&check(&s, &e), "no_accepted_order_lost"), 1);
}

#[test]
fn the_message_id_is_read_from_the_headers_only() {
    let mail =
        "Subject: hi\r\nmessage-ID: <order-confirmation.1@orderflow>\r\n\r\nMessage-ID: <not-this>\r\n";
    assert_eq!(
        message_id(mail).as_deref(),
        Some("<order-confirmation.1@orderflow>")
    );
    assert_eq!(
        message_id("Subject: none\r\n\r\nMessage-ID: <body>\r\n"),
        None
    );
}

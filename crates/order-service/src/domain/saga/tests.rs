//! The status machine, signal by signal and in every arrival order.

use super::*;

/// Applies signals one by one from a new order; returns the final status,
/// facts and every emitted event.
fn run(signals: &[Signal]) -> (Status, Facts, Vec<Emit>) {
    let mut status = Status::Pending;
    let mut facts = Facts::default();
    let mut all = Vec::new();
    for &s in signals {
        let t = on_signal(status, facts, None, s);
        status = t.status;
        facts = t.facts;
        all.extend(t.emits);
    }
    (status, facts, all)
}

#[test]
fn happy_path_step_by_step() {
    use Signal::*;
    let mut status = Status::Pending;
    let mut facts = Facts::default();
    let expected = [
        (Reserved, Status::InventoryReserved, vec![]),
        (Paid, Status::Paid, vec![Emit::Confirmed]),
        (ShippingCreated, Status::ShippingCreated, vec![]),
        (Notified, Status::Shipped, vec![Emit::Shipped]),
        (Dispatched, Status::Shipped, vec![]),
        (Delivered, Status::Delivered, vec![Emit::Delivered]),
    ];
    for (signal, want, emits) in expected {
        let t = on_signal(status, facts, None, signal);
        assert_eq!(t.status, want, "after {signal:?}");
        assert_eq!(t.emits, emits, "after {signal:?}");
        assert!(t.applied);
        status = t.status;
        facts = t.facts;
    }
}

#[test]
fn payment_before_reservation_ends_in_the_same_place() {
    use Signal::*;
    let t = on_signal(Status::Pending, Facts::default(), None, Paid);
    assert_eq!(t.status, Status::Pending);
    assert!(t.emits.is_empty());
    assert!(t.facts.paid);
    let t = on_signal(t.status, t.facts, None, Reserved);
    assert_eq!(t.status, Status::Paid);
    assert_eq!(t.emits, vec![Emit::Confirmed]);

    assert_eq!(run(&[Paid, Reserved]).0, run(&[Reserved, Paid]).0);
    assert_eq!(run(&[Paid, Reserved]).2, run(&[Reserved, Paid]).2);
}

#[test]
fn every_arrival_order_of_the_facts_gives_the_same_outcome() {
    use Signal::*;
    let signals = [Reserved, Paid, ShippingCreated, Notified, Delivered];
    let reference = run(&signals);
    assert_eq!(reference.0, Status::Delivered);
    assert_eq!(
        reference.2,
        vec![Emit::Confirmed, Emit::Shipped, Emit::Delivered]
    );
    // All 120 permutations.
    fn permute(items: &mut Vec<Signal>, k: usize, out: &mut Vec<Vec<Signal>>) {
        if k == items.len() {
            out.push(items.clone());
            return;
        }
        for i in k..items.len() {
            items.swap(k, i);
            permute(items, k + 1, out);
            items.swap(k, i);
        }
    }
    let mut all = Vec::new();
    permute(&mut signals.to_vec(), 0, &mut all);
    assert_eq!(all.len(), 120);
    for order in all {
        let (status, _, emits) = run(&order);
        assert_eq!(status, Status::Delivered, "{order:?}");
        assert_eq!(emits, reference.2, "{order:?}");
    }
}

#[test]
fn several_steps_at_once_emit_in_saga_order() {
    let facts = Facts {
        reserved: true,
        paid: true,
        shipping_created: true,
        notified: true,
        dispatched: true,
        delivered: true,
    };
    assert_eq!(
        advance(Status::Pending, &facts),
        (
            Status::Delivered,
            vec![Emit::Confirmed, Emit::Shipped, Emit::Delivered]
        )
    );
}

#[test]
fn shipped_needs_the_notification_and_delivered_needs_shipped() {
    use Signal::*;
    let (status, facts, emits) = run(&[Reserved, Paid, ShippingCreated, Dispatched, Delivered]);
    assert_eq!(status, Status::ShippingCreated);
    assert!(facts.dispatched && facts.delivered);
    assert_eq!(emits, vec![Emit::Confirmed]);
    let t = on_signal(status, facts, None, Notified);
    assert_eq!(t.status, Status::Delivered);
    assert_eq!(t.emits, vec![Emit::Shipped, Emit::Delivered]);
}

#[test]
fn failures_cancel_an_open_saga() {
    use Signal::*;
    let (status, _, emits) = run(&[ReservationFailed]);
    assert_eq!(status, Status::Cancelled);
    assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);

    let (status, _, emits) = run(&[Reserved, PaymentFailed]);
    assert_eq!(status, Status::Cancelled);
    assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::PaymentDeclined)]);

    // A payment failure that overtakes the reservation still cancels.
    let (status, _, emits) = run(&[PaymentFailed, Reserved]);
    assert_eq!(status, Status::Cancelled);
    assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::PaymentDeclined)]);
}

#[test]
fn a_cancelled_order_records_nothing_more() {
    use Signal::*;
    for signal in [
        Reserved,
        ReservationFailed,
        Paid,
        PaymentFailed,
        ShippingCreated,
        Notified,
        Dispatched,
        Delivered,
        Informational,
    ] {
        let t = on_signal(Status::Cancelled, Facts::default(), None, signal);
        assert_eq!(t.status, Status::Cancelled);
        assert_eq!(t.facts, Facts::default());
        assert!(t.emits.is_empty());
        assert!(!t.applied);
    }
    // Cancelled once, never twice.
    let (status, _, emits) = run(&[ReservationFailed, PaymentFailed, Reserved, Paid]);
    assert_eq!(status, Status::Cancelled);
    assert_eq!(emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);
}

#[test]
fn failures_after_shipping_change_nothing() {
    for status in [Status::Shipped, Status::Delivered] {
        for signal in [Signal::ReservationFailed, Signal::PaymentFailed] {
            let t = on_signal(status, Facts::default(), None, signal);
            assert_eq!(t.status, status);
            assert!(t.emits.is_empty());
            assert!(!t.applied);
        }
    }
}

#[test]
fn delivered_is_final() {
    let t = on_signal(Status::Delivered, Facts::default(), None, Signal::Reserved);
    assert_eq!(t.status, Status::Delivered);
    assert!(t.emits.is_empty());
    let t = on_signal(
        Status::Delivered,
        Facts::default(),
        None,
        Signal::Informational,
    );
    assert_eq!(t.status, Status::Delivered);
    assert!(!t.applied);
}

#[test]
fn customer_cancellation_rules() {
    let none = Facts::default();
    let dispatched = Facts {
        dispatched: true,
        ..Facts::default()
    };
    for s in Status::OPEN {
        if s != Status::Cancelling {
            assert_eq!(customer_cancel(s, &none), CancelDecision::Request, "{s}");
        }
    }
    assert_eq!(
        customer_cancel(Status::Cancelling, &none),
        CancelDecision::AlreadyRequested
    );
    for s in [Status::ShippingCreated, Status::Shipped, Status::Delivered] {
        assert_eq!(
            customer_cancel(s, &dispatched),
            CancelDecision::AlreadyDispatched,
            "{s}"
        );
    }
    assert_eq!(
        customer_cancel(Status::Cancelled, &none),
        CancelDecision::AlreadyCancelled
    );
    assert_eq!(
        customer_cancel(Status::Shipped, &none),
        CancelDecision::NotCancellable
    );
    assert_eq!(
        customer_cancel(Status::Delivered, &none),
        CancelDecision::NotCancellable
    );
}

#[test]
fn deadline_rules() {
    for s in [Status::Pending, Status::InventoryReserved] {
        assert_eq!(
            deadline_action(s, &Facts::default()),
            DeadlineAction::Cancel,
            "{s}"
        );
    }
    let paid = Facts {
        reserved: true,
        paid: true,
        ..Facts::default()
    };
    for s in [Status::Paid, Status::ShippingCreated] {
        assert_eq!(deadline_action(s, &paid), DeadlineAction::Stall, "{s}");
    }
    // A request waiting for shipping's answer is not asked again.
    assert_eq!(
        deadline_action(Status::Cancelling, &Facts::default()),
        DeadlineAction::Stall
    );
    for s in [Status::Shipped, Status::Delivered, Status::Cancelled] {
        assert_eq!(deadline_action(s, &paid), DeadlineAction::Nothing, "{s}");
    }
    let dispatched = Facts {
        dispatched: true,
        ..paid
    };
    assert_eq!(
        deadline_action(Status::ShippingCreated, &dispatched),
        DeadlineAction::Nothing
    );
}

fn pending(from: Status, code: ReasonCode) -> Option<PendingCancel> {
    Some(PendingCancel { from, code })
}

#[test]
fn a_confirmed_cancellation_cancels_with_the_requested_reason() {
    let facts = Facts {
        reserved: true,
        paid: true,
        shipping_created: true,
        ..Facts::default()
    };
    let t = on_signal(
        Status::Cancelling,
        facts,
        pending(Status::ShippingCreated, ReasonCode::CustomerRequest),
        Signal::ShippingCancelled,
    );
    assert_eq!(t.status, Status::Cancelled);
    assert_eq!(t.emits, vec![Emit::Cancelled(ReasonCode::CustomerRequest)]);
    assert!(t.applied);
}

#[test]
fn a_rejected_cancellation_resumes_as_far_as_the_facts_allow() {
    // Requested while PAID; meanwhile the shipment was created, the
    // confirmation e-mail sent and the parcel dispatched.
    let facts = Facts {
        reserved: true,
        paid: true,
        shipping_created: true,
        notified: true,
        dispatched: true,
        delivered: false,
    };
    let t = on_signal(
        Status::Cancelling,
        facts,
        pending(Status::Paid, ReasonCode::CustomerRequest),
        Signal::CancellationRejected,
    );
    assert_eq!(t.status, Status::Shipped);
    // OrderConfirmed was emitted before the request: not again.
    assert_eq!(t.emits, vec![Emit::Shipped]);
}

#[test]
fn a_cancelling_order_records_facts_without_advancing() {
    use Signal::*;
    let p = pending(Status::InventoryReserved, ReasonCode::SagaTimeout);
    let mut status = Status::Cancelling;
    let mut facts = Facts {
        reserved: true,
        ..Facts::default()
    };
    for signal in [Paid, ShippingCreated, Notified, Dispatched] {
        let t = on_signal(status, facts, p, signal);
        assert_eq!(t.status, Status::Cancelling, "{signal:?}");
        assert!(t.emits.is_empty(), "{signal:?}");
        assert!(t.applied);
        (status, facts) = (t.status, t.facts);
    }
    assert!(facts.paid && facts.shipping_created && facts.notified && facts.dispatched);
    let t = on_signal(status, facts, p, CancellationRejected);
    assert_eq!(t.status, Status::Shipped);
    assert_eq!(t.emits, vec![Emit::Confirmed, Emit::Shipped]);
}

#[test]
fn a_failure_while_cancelling_cancels_at_once() {
    let p = pending(Status::Pending, ReasonCode::CustomerRequest);
    let t = on_signal(
        Status::Cancelling,
        Facts::default(),
        p,
        Signal::ReservationFailed,
    );
    assert_eq!(t.status, Status::Cancelled);
    assert_eq!(t.emits, vec![Emit::Cancelled(ReasonCode::OutOfStock)]);
    // Shipping's later answer only goes to the timeline.
    for signal in [Signal::ShippingCancelled, Signal::CancellationRejected] {
        let late = on_signal(t.status, t.facts, None, signal);
        assert_eq!(late.status, Status::Cancelled);
        assert!(!late.applied && late.emits.is_empty());
    }
}

#[test]
fn an_answer_without_a_request_changes_nothing() {
    for signal in [Signal::ShippingCancelled, Signal::CancellationRejected] {
        let t = on_signal(Status::ShippingCreated, Facts::default(), None, signal);
        assert_eq!(t.status, Status::ShippingCreated);
        assert!(!t.applied && t.emits.is_empty());
    }
}

#[test]
fn reason_codes_round_trip() {
    for code in [
        ReasonCode::OutOfStock,
        ReasonCode::PaymentDeclined,
        ReasonCode::CustomerRequest,
        ReasonCode::SagaTimeout,
    ] {
        assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
    }
    assert_eq!(ReasonCode::parse("NOPE"), None);
}

#[test]
fn status_names_round_trip() {
    for s in Status::ALL {
        assert_eq!(Status::parse(s.as_str()), Some(s));
        assert_eq!(Status::try_from(s.as_str().to_owned()), Ok(s));
    }
    assert_eq!(Status::parse("pending"), None);
    assert!(Status::try_from("NOPE".to_owned()).is_err());
}

//! The invariants of a stack once its load has settled, read from the five
//! databases, the topics and the SMTP listener's Maildir: the one checker
//! of the fault campaign (`tests/src/chaos`), the concurrency tests and
//! `orderctl bench run`.
//!
//! [`read_state`] reads what is there (`read.rs`); [`check`] says which promise each
//! order, SKU, record or e-mail breaks, against what the load did
//! ([`Expected`]). Both are separate so that the rules are unit-tested on
//! states made by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::Service;

mod read;

pub use read::read_state;

/// One invariant and what breaks it.
#[derive(Debug)]
pub struct Invariant {
    /// A short name (`stock_conserved`), for files and summaries.
    pub id: &'static str,
    /// What must hold.
    pub name: &'static str,
    /// Examples of what broke it (all of them are counted).
    pub violations: Vec<String>,
}

/// A record published as poison: where it landed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Poisoned {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// The orders the API accepted.
#[derive(Debug, Clone)]
pub enum Accepted {
    /// By id: each must be stored (the database may hold more: an order
    /// whose answer the client never saw).
    Ids(BTreeSet<String>),
    /// Only how many (`orderctl load` keeps no ids): the database must hold
    /// exactly as many.
    Count(i64),
}

/// What the load did, to check the state against.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The orders accepted.
    pub accepted: Accepted,
    /// The stock each SKU started with; the stock table holds no other SKU.
    pub initial: BTreeMap<String, i64>,
    /// Records published as poison (each must be dead-lettered by every
    /// group reading its topic, and nothing else may be).
    pub poison: Vec<Poisoned>,
    /// Which consumer groups read each topic.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// One order as the order service holds it.
#[derive(Debug, Clone, Default)]
pub struct Order {
    /// Status.
    pub status: String,
    /// Reason code of a cancellation.
    pub reason: Option<String>,
    /// Set aside for an operator (the saga gave up waiting).
    pub stalled: bool,
    /// The payment the order recorded as its charge.
    pub payment_id: Option<String>,
}

/// One e-mail as the notification service recorded it.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Order id.
    pub order: String,
    /// `ORDER_CONFIRMATION` or `ORDER_CANCELLED`.
    pub kind: String,
    /// `SENT` or `FAILED`.
    pub status: String,
    /// Its Message-ID.
    pub message_id: String,
}

/// The final state the checks read.
#[derive(Debug, Default)]
pub struct State {
    /// Order id → the order.
    pub orders: HashMap<String, Order>,
    /// Order id → (payment status, payment id).
    pub payments: HashMap<String, (String, String)>,
    /// Order id → (shipment status, lines).
    pub shipments: HashMap<String, (String, Vec<(String, i64)>)>,
    /// SKU → (available, reserved, shipped).
    pub stock: BTreeMap<String, (i64, i64, i64)>,
    /// (order id, event type) → distinct event ids seen on the topics.
    pub events: HashMap<(String, String), BTreeSet<String>>,
    /// Dead letters: (original topic, partition, offset, group).
    pub dead_letters: Vec<(String, i32, i64, String)>,
    /// The e-mails the notification service recorded.
    pub notifications: Vec<Notification>,
    /// Message-IDs of the e-mails in the Maildir (with repeats: SMTP is at
    /// least once).
    pub mailbox: Vec<String>,
    /// Service → outbox rows not yet published.
    pub outbox_pending: BTreeMap<Service, i64>,
}

impl State {
    /// (order id, e-mail kind) → Message-IDs received, from the Maildir
    /// (`<kind.orderId@orderflow>`).
    pub fn mails(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for m in &self.mailbox {
            let id = m.trim_matches(|c| c == '<' || c == '>');
            if let Some((kind, rest)) = id.split_once('.') {
                let order = rest.split('@').next().unwrap_or_default();
                out.entry((order.to_owned(), kind.to_owned()))
                    .or_default()
                    .push(m.clone());
            }
        }
        out
    }

    /// Outbox rows not yet published, over every service.
    pub fn pending(&self) -> i64 {
        self.outbox_pending.values().sum()
    }
}

/// Effects that must happen at most once per order.
/// (Not `NotificationSent`: an order may get a confirmation and then a
/// cancellation e-mail; e-mails are checked per kind.)
const ONCE: [&str; 8] = [
    "InventoryReserved",
    "InventoryReleased",
    "PaymentProcessed",
    "PaymentRefunded",
    "ShippingCreated",
    "ShippingDispatched",
    "OrderCancelled",
    "OrderShipped",
];

fn shipped(status: &str) -> bool {
    matches!(status, "SHIPPED" | "DELIVERED")
}

/// Checks every invariant of `s` against `e`.
pub fn check(s: &State, e: &Expected) -> Vec<Invariant> {
    let mut lost = Vec::new();
    let considered: Vec<&String> = match &e.accepted {
        Accepted::Ids(ids) => {
            lost.extend(ids.iter().filter(|id| !s.orders.contains_key(*id)).cloned());
            ids.iter().filter(|id| s.orders.contains_key(*id)).collect()
        }
        Accepted::Count(n) => {
            if s.orders.len() as i64 != *n {
                lost.push(format!("{n} accepted, {} stored", s.orders.len()));
            }
            s.orders.keys().collect()
        }
    };
    let mut unfinished = Vec::new();
    let mut mixed = Vec::new();
    let mut money = Vec::new();
    let mut no_shipment = Vec::new();
    let mut untold = Vec::new();
    let told: BTreeSet<(&str, &str)> = s
        .notifications
        .iter()
        .map(|n| (n.order.as_str(), n.kind.as_str()))
        .collect();
    for id in considered {
        let o = &s.orders[id];
        let status = o.status.as_str();
        let terminal = shipped(status) || status == "CANCELLED";
        if !terminal && !o.stalled {
            unfinished.push(format!("{id} {status}"));
        }
        let payment = s.payments.get(id);
        let pay_status = payment.map_or("none", |p| p.0.as_str());
        let shipment = s.shipments.get(id).map_or("none", |x| x.0.as_str());
        let left = matches!(shipment, "DISPATCHED" | "DELIVERED");
        if (left && (pay_status == "REFUNDED" || status == "CANCELLED"))
            || (status == "CANCELLED" && shipment == "CREATED")
        {
            mixed.push(format!(
                "{id}: order {status}, payment {pay_status}, shipment {shipment}"
            ));
        }
        if status == "CANCELLED" && pay_status == "PROCESSED" {
            money.push(format!("{id}: cancelled but charged"));
        }
        if shipped(status) && pay_status != "PROCESSED" {
            money.push(format!("{id}: {status} but payment {pay_status}"));
        }
        if let Some(named) = &o.payment_id {
            match payment {
                Some((st, pid))
                    if pid == named && matches!(st.as_str(), "PROCESSED" | "REFUNDED") => {}
                _ => money.push(format!(
                    "{id}: records payment {named}, the payment service has {payment:?}"
                )),
            }
        } else if shipped(status) {
            money.push(format!("{id}: {status} without a payment id"));
        }
        if shipped(status) && !matches!(shipment, "CREATED" | "DISPATCHED" | "DELIVERED") {
            no_shipment.push(format!("{id}: {status}, shipment {shipment}"));
        }
        if shipped(status) && !told.contains(&(id.as_str(), "ORDER_CONFIRMATION")) {
            untold.push(format!("{id}: {status} without a confirmation e-mail"));
        }
        if status == "CANCELLED" && !told.contains(&(id.as_str(), "ORDER_CANCELLED")) {
            untold.push(format!("{id}: cancelled without a cancellation e-mail"));
        }
    }
    let orphan_charges: Vec<String> = s
        .payments
        .iter()
        .filter(|(id, (st, _))| {
            !s.orders.contains_key(*id) && matches!(st.as_str(), "PROCESSED" | "REFUNDED")
        })
        .map(|(id, (st, _))| format!("{id}: payment {st}, no such order"))
        .collect();
    let twice: Vec<String> = s
        .events
        .iter()
        .filter(|((_, t), ids)| ONCE.contains(&t.as_str()) && ids.len() > 1)
        .map(|((o, t), ids)| format!("{o}: {} distinct {t}", ids.len()))
        .collect();
    let mails_twice: Vec<String> = s
        .mails()
        .iter()
        .filter(|(_, ids)| ids.iter().collect::<BTreeSet<_>>().len() > 1)
        .map(|((o, k), ids)| format!("{o}: {} {k} e-mails", ids.len()))
        .collect();
    let received: BTreeSet<&str> = s.mailbox.iter().map(String::as_str).collect();
    let recorded: BTreeSet<&str> = s
        .notifications
        .iter()
        .map(|n| n.message_id.as_str())
        .collect();
    let mut mail_lost = Vec::new();
    for n in s.notifications.iter().filter(|n| n.status == "SENT") {
        if !received.contains(n.message_id.as_str()) {
            mail_lost.push(format!(
                "{} recorded as sent, not in the Maildir",
                n.message_id
            ));
        }
    }
    for m in &received {
        if !recorded.contains(m) {
            mail_lost.push(format!("{m} in the Maildir, not recorded"));
        }
    }
    vec![
        Invariant {
            id: "no_accepted_order_lost",
            name: "no accepted order lost",
            violations: lost,
        },
        Invariant {
            id: "every_saga_finished",
            name: "every saga finished (or stalled)",
            violations: unfinished,
        },
        Invariant {
            id: "never_shipped_and_cancelled",
            name: "never both shipped and cancelled/refunded",
            violations: mixed,
        },
        Invariant {
            id: "charged_iff_shipped",
            name: "charged iff shipped, with the payment it names",
            violations: money,
        },
        Invariant {
            id: "no_charge_without_order",
            name: "no charge without an order",
            violations: orphan_charges,
        },
        Invariant {
            id: "shipped_with_shipment",
            name: "every shipped order has its shipment",
            violations: no_shipment,
        },
        Invariant {
            id: "effects_at_most_once",
            name: "each effect at most once per order",
            violations: twice,
        },
        Invariant {
            id: "outcome_emailed",
            name: "every outcome told by e-mail",
            violations: untold,
        },
        Invariant {
            id: "emails_at_most_once_per_kind",
            name: "at most one e-mail per kind per order",
            violations: mails_twice,
        },
        Invariant {
            id: "emails_recorded_and_received",
            name: "every e-mail sent received, every one received recorded",
            violations: mail_lost,
        },
        Invariant {
            id: "stock_conserved",
            name: "stock conserved per SKU",
            violations: stock(s, &e.initial),
        },
        Invariant {
            id: "dead_letters_accounted_for",
            name: "every dead letter accounted for",
            violations: dead_letters(s, e),
        },
    ]
}

/// Every unit is somewhere; the units reserved are those of the shipments
/// waiting in the warehouse (a cancelled or finished saga holds none), the
/// units shipped those of the dispatched ones; no SKU the load did not
/// stock.
fn stock(s: &State, initial: &BTreeMap<String, i64>) -> Vec<String> {
    let mut dispatched: BTreeMap<&str, i64> = BTreeMap::new();
    let mut waiting: BTreeMap<&str, i64> = BTreeMap::new();
    for (status, lines) in s.shipments.values() {
        let into = match status.as_str() {
            "DISPATCHED" | "DELIVERED" => &mut dispatched,
            "CREATED" => &mut waiting,
            _ => continue,
        };
        for (sku, q) in lines {
            *into.entry(sku.as_str()).or_default() += q;
        }
    }
    let mut out = Vec::new();
    for (sku, start) in initial {
        let (a, r, sh) = s.stock.get(sku).copied().unwrap_or_default();
        let gone = dispatched.get(sku.as_str()).copied().unwrap_or_default();
        let held = waiting.get(sku.as_str()).copied().unwrap_or_default();
        if a + r + sh != *start || r != held || sh != gone {
            out.push(format!(
                "{sku}: started {start}, now available {a} reserved {r} shipped {sh}; \
                 shipments waiting {held}, dispatched {gone}"
            ));
        }
    }
    for sku in s.stock.keys().filter(|k| !initial.contains_key(*k)) {
        out.push(format!("{sku}: in stock, never stocked by the load"));
    }
    out
}

/// Every dead letter is a poison record, and every poison record was
/// dead-lettered by every group reading its topic.
fn dead_letters(s: &State, e: &Expected) -> Vec<String> {
    let poisoned: BTreeSet<(&str, i32, i64)> = e
        .poison
        .iter()
        .map(|p| (p.topic.as_str(), p.partition, p.offset))
        .collect();
    let mut out = Vec::new();
    for (topic, partition, offset, group) in &s.dead_letters {
        if !poisoned.contains(&(topic.as_str(), *partition, *offset)) {
            out.push(format!(
                "{group} dead-lettered {topic}[{partition}]@{offset}, not a poison record"
            ));
        }
    }
    for p in &e.poison {
        for group in e.groups.get(&p.topic).into_iter().flatten() {
            let found = s.dead_letters.iter().any(|(t, pa, o, g)| {
                t == &p.topic && *pa == p.partition && *o == p.offset && g == group
            });
            if !found {
                out.push(format!(
                    "{group} never dead-lettered poison {}[{}]@{}",
                    p.topic, p.partition, p.offset
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

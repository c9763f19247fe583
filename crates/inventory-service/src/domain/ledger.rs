//! A batch of saga events worked out in memory: the stock rows and
//! reservations the batch touches are locked and read first, every record
//! then moves units and reservations here, in record order (so two records
//! of one order, or of one SKU, see each other), and [`Ledger::writes`]
//! gives what to store, each row once.

use std::collections::{BTreeMap, HashMap};

use orderflow_events::events::StockLine;

use crate::domain::reservation::{decide, requested_per_sku, Decision, Status};

/// An order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its state.
    pub status: Status,
    /// The order's lines.
    pub items: Vec<StockLine>,
    /// Why it failed or was released.
    pub reason: Option<String>,
}

/// What a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every line is now held for the order.
    Reserved,
    /// Nothing could be reserved: `reason`, naming the `skus` at fault.
    Failed {
        /// Human-readable, naming each problem.
        reason: String,
        /// The SKUs at fault, sorted.
        skus: Vec<String>,
    },
    /// The held units went back to `available`; these were the lines.
    Released(Vec<StockLine>),
    /// The held units left the warehouse.
    Shipped,
    /// Nothing to do: the order already had a reservation (for a reserve)
    /// or holds none (release, ship); its state, if any.
    Unchanged(Option<Status>),
}

/// Net units moved on one SKU's row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Change of `available`.
    pub available: i64,
    /// Change of `reserved`.
    pub reserved: i64,
    /// Change of `shipped`.
    pub shipped: i64,
}

#[derive(Debug)]
struct Entry {
    held: Held,
    /// The row exists in the database (else it is inserted).
    stored: bool,
    /// Changed by this batch.
    dirty: bool,
}

/// The batch's view of the locked rows.
#[derive(Debug)]
pub struct Ledger {
    available: HashMap<String, i32>,
    moves: BTreeMap<String, Delta>,
    reservations: HashMap<String, Entry>,
}

/// What a batch stores.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Writes {
    /// New reservations, in their final state.
    pub created: Vec<(String, Held)>,
    /// Stored reservations whose state changed: order id, status, reason.
    pub settled: Vec<(String, Status, Option<String>)>,
    /// Units to move per SKU (net, never zero), sorted by SKU.
    pub moves: Vec<(String, Delta)>,
}

impl Ledger {
    /// The units `available` per locked SKU (unknown SKUs absent) and the
    /// `stored` reservations of the batch's orders.
    pub fn new(available: HashMap<String, i32>, stored: Vec<(String, Held)>) -> Self {
        let reservations = stored
            .into_iter()
            .map(|(id, held)| {
                let entry = Entry {
                    held,
                    stored: true,
                    dirty: false,
                };
                (id, entry)
            })
            .collect();
        Self {
            available,
            moves: BTreeMap::new(),
            reservations,
        }
    }

    /// Reserves every line of a new order, or none. An order that already
    /// has a reservation (whatever its state) is left alone.
    pub fn reserve(&mut self, order_id: &str, lines: &[StockLine]) -> Outcome {
        if let Some(entry) = self.reservations.get(order_id) {
            return Outcome::Unchanged(Some(entry.held.status));
        }
        let requested = requested_per_sku(lines);
        let (held, outcome) = match decide(&requested, &self.available) {
            Decision::Reserve(per_sku) => {
                for (sku, quantity) in per_sku {
                    if let Some(a) = self.available.get_mut(&sku) {
                        // `decide` checked that it fits, so this stays ≥ 0.
                        *a -= i32::try_from(quantity).unwrap_or(i32::MAX);
                    }
                    let d = self.moves.entry(sku).or_default();
                    d.available -= quantity;
                    d.reserved += quantity;
                }
                let held = Held {
                    status: Status::Reserved,
                    items: lines.to_vec(),
                    reason: None,
                };
                (held, Outcome::Reserved)
            }
            Decision::Fail { reason, skus } => {
                let held = Held {
                    status: Status::Failed,
                    items: lines.to_vec(),
                    reason: Some(reason.clone()),
                };
                (held, Outcome::Failed { reason, skus })
            }
        };
        let entry = Entry {
            held,
            stored: false,
            dirty: true,
        };
        self.reservations.insert(order_id.to_owned(), entry);
        outcome
    }

    /// Gives a held reservation back to `available` (`RELEASED`, recording
    /// `reason`); in any other state there is nothing to give back.
    pub fn release(&mut self, order_id: &str, reason: String) -> Outcome {
        let Some(items) = self.settle(order_id, Status::Released, Some(reason)) else {
            return Outcome::Unchanged(self.status(order_id));
        };
        for (sku, quantity) in requested_per_sku(&items) {
            if let Some(a) = self.available.get_mut(&sku) {
                *a = a.saturating_add(i32::try_from(quantity).unwrap_or(i32::MAX));
            }
            let d = self.moves.entry(sku).or_default();
            d.reserved -= quantity;
            d.available += quantity;
        }
        Outcome::Released(items)
    }

    /// Moves a held reservation from `reserved` to `shipped` (`SHIPPED`); in
    /// any other state nothing moves.
    pub fn ship(&mut self, order_id: &str) -> Outcome {
        let Some(items) = self.settle(order_id, Status::Shipped, None) else {
            return Outcome::Unchanged(self.status(order_id));
        };
        for (sku, quantity) in requested_per_sku(&items) {
            let d = self.moves.entry(sku).or_default();
            d.reserved -= quantity;
            d.shipped += quantity;
        }
        Outcome::Shipped
    }

    /// Moves a `RESERVED` reservation to `status`, returning its lines.
    fn settle(
        &mut self,
        order_id: &str,
        status: Status,
        reason: Option<String>,
    ) -> Option<Vec<StockLine>> {
        let entry = self.reservations.get_mut(order_id)?;
        if entry.held.status != Status::Reserved {
            return None;
        }
        entry.held.status = status;
        if reason.is_some() {
            entry.held.reason = reason;
        }
        entry.dirty = true;
        Some(entry.held.items.clone())
    }

    fn status(&self, order_id: &str) -> Option<Status> {
        self.reservations.get(order_id).map(|e| e.held.status)
    }

    /// What to store: each changed reservation once, in its final state,
    /// and the net units moved per SKU.
    pub fn writes(self) -> Writes {
        let mut writes = Writes::default();
        for (id, entry) in self.reservations {
            match (entry.dirty, entry.stored) {
                (false, _) => {}
                (true, false) => writes.created.push((id, entry.held)),
                (true, true) => writes
                    .settled
                    .push((id, entry.held.status, entry.held.reason)),
            }
        }
        writes.created.sort_by(|a, b| a.0.cmp(&b.0));
        writes.settled.sort_by(|a, b| a.0.cmp(&b.0));
        writes.moves = self
            .moves
            .into_iter()
            .filter(|(_, d)| *d != Delta::default())
            .collect();
        writes
    }
}

/// The SKUs a batch must lock: those of the orders to reserve and those of
/// the stored reservations, sorted and each once.
pub fn skus_to_lock<'a>(
    new_lines: impl IntoIterator<Item = &'a StockLine>,
    stored: &'a [(String, Held)],
) -> Vec<String> {
    let mut skus: Vec<String> = new_lines
        .into_iter()
        .chain(stored.iter().flat_map(|(_, h)| &h.items))
        .map(|l| l.sku.clone())
        .collect();
    skus.sort_unstable();
    skus.dedup();
    skus
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    fn ledger(stock: &[(&str, i32)], stored: Vec<(String, Held)>) -> Ledger {
        let available = stock.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect();
        Ledger::new(available, stored)
    }

    fn delta(available: i64, reserved: i64, shipped: i64) -> Delta {
        Delta {
            available,
            reserved,
            shipped,
        }
    }

    #[test]
    fn later_orders_see_the_units_earlier_ones_took() {
        let mut l = ledger(&[("A", 3)], Vec::new());
        assert_eq!(l.reserve("o-1", &[line("A", 2)]), Outcome::Reserved);
        assert_eq!(
            l.reserve("o-2", &[line("A", 2)]),
            Outcome::Failed {
                reason: "insufficient stock for A (requested 2, available 1)".into(),
                skus: vec!["A".into()],
            }
        );
        assert_eq!(l.reserve("o-3", &[line("A", 1)]), Outcome::Reserved);
        let w = l.writes();
        assert_eq!(w.moves, [("A".to_owned(), delta(-3, 3, 0))]);
        let created: Vec<(&str, Status)> = w
            .created
            .iter()
            .map(|(id, h)| (id.as_str(), h.status))
            .collect();
        assert_eq!(
            created,
            [
                ("o-1", Status::Reserved),
                ("o-2", Status::Failed),
                ("o-3", Status::Reserved)
            ]
        );
        assert!(w.settled.is_empty());
    }

    #[test]
    fn a_release_in_the_same_batch_frees_units_for_the_next_order() {
        let mut l = ledger(&[("A", 2)], Vec::new());
        assert_eq!(l.reserve("o-1", &[line("A", 2)]), Outcome::Reserved);
        assert_eq!(
            l.release("o-1", "order cancelled: x".into()),
            Outcome::Released(vec![line("A", 2)])
        );
        assert_eq!(l.reserve("o-2", &[line("A", 2)]), Outcome::Reserved);
        // A second release of o-1, or shipping it, finds nothing held.
        assert_eq!(
            l.release("o-1", "again".into()),
            Outcome::Unchanged(Some(Status::Released))
        );
        assert_eq!(l.ship("o-1"), Outcome::Unchanged(Some(Status::Released)));
        let w = l.writes();
        assert_eq!(w.moves, [("A".to_owned(), delta(-2, 2, 0))]);
        assert_eq!(w.created[0].0, "o-1");
        assert_eq!(w.created[0].1.status, Status::Released);
        assert_eq!(w.created[0].1.reason.as_deref(), Some("order cancelled: x"));
    }

    #[test]
    fn stored_reservations_are_settled_once_and_never_reserved_again() {
        let held = |status| Held {
            status,
            items: vec![line("A", 1), line("B", 2)],
            reason: None,
        };
        let stored = vec![
            ("o-1".to_owned(), held(Status::Reserved)),
            ("o-2".to_owned(), held(Status::Reserved)),
            ("o-3".to_owned(), held(Status::Failed)),
        ];
        let mut l = ledger(&[("A", 5), ("B", 5)], stored);
        assert_eq!(
            l.reserve("o-1", &[line("A", 1)]),
            Outcome::Unchanged(Some(Status::Reserved))
        );
        assert_eq!(l.ship("o-1"), Outcome::Shipped);
        assert_eq!(l.ship("o-1"), Outcome::Unchanged(Some(Status::Shipped)));
        assert!(matches!(
            l.release("o-2", "payment failed: no".into()),
            Outcome::Released(_)
        ));
        assert_eq!(
            l.release("o-3", "x".into()),
            Outcome::Unchanged(Some(Status::Failed))
        );
        assert_eq!(l.ship("o-9"), Outcome::Unchanged(None));
        let w = l.writes();
        assert!(w.created.is_empty());
        assert_eq!(
            w.settled,
            [
                ("o-1".to_owned(), Status::Shipped, None),
                (
                    "o-2".to_owned(),
                    Status::Released,
                    Some("payment failed: no".to_owned())
                ),
            ]
        );
        assert_eq!(
            w.moves,
            [
                ("A".to_owned(), delta(1, -2, 1)),
                ("B".to_owned(), delta(2, -4, 2))
            ]
        );
    }

    #[test]
    fn skus_to_lock_are_sorted_and_unique() {
        let stored = vec![(
            "o-1".to_owned(),
            Held {
                status: Status::Reserved,
                items: vec![line("C", 1), line("A", 1)],
                reason: None,
            },
        )];
        let new = [line("B", 1), line("A", 2)];
        assert_eq!(skus_to_lock(&new, &stored), ["A", "B", "C"]);
    }
}

//! The pure rules of a reservation: what an order asks for, whether the
//! stock can give it (all lines or none), and the state a reservation is in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use orderflow_events::events::StockLine;

/// Units requested per SKU, lines of the same SKU summed, sorted by SKU
/// (the order in which stock rows are locked, so concurrent handlers never
/// deadlock on each other).
pub fn requested_per_sku(lines: &[StockLine]) -> BTreeMap<String, i64> {
    let mut per_sku = BTreeMap::new();
    for line in lines {
        *per_sku.entry(line.sku.clone()).or_insert(0i64) += i64::from(line.quantity);
    }
    per_sku
}

/// Why the lines of an event cannot be processed at all (not a stock
/// problem: the event itself is invalid).
pub fn invalid_lines(lines: &[StockLine]) -> Option<String> {
    if lines.is_empty() {
        return Some("the order has no lines".to_owned());
    }
    let bad: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.quantity <= 0)
        .map(|(i, l)| format!("items[{i}] ({}) has quantity {}", l.sku, l.quantity))
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// What to do with an order, given the stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every SKU has enough units: reserve these quantities (per SKU).
    Reserve(BTreeMap<String, i64>),
    /// At least one SKU is unknown or short: reserve nothing.
    Fail {
        /// Human-readable, naming each problem.
        reason: String,
        /// The SKUs at fault, sorted.
        skus: Vec<String>,
    },
}

/// Decides all-or-nothing: `requested` units per SKU against the units
/// `available` per known SKU.
pub fn decide(requested: &BTreeMap<String, i64>, available: &HashMap<String, i32>) -> Decision {
    let mut problems = Vec::new();
    let mut skus = Vec::new();
    for (sku, &wanted) in requested {
        match available.get(sku) {
            None => {
                problems.push(format!("unknown SKU {sku}"));
                skus.push(sku.clone());
            }
            Some(&have) if i64::from(have) < wanted => {
                problems.push(format!(
                    "insufficient stock for {sku} (requested {wanted}, available {have})"
                ));
                skus.push(sku.clone());
            }
            Some(_) => {}
        }
    }
    if skus.is_empty() {
        Decision::Reserve(requested.clone())
    } else {
        Decision::Fail {
            reason: problems.join("; "),
            skus,
        }
    }
}

/// The state of an order's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Units are held for the order.
    Reserved,
    /// The held units went back to `available` (payment failed or order
    /// cancelled).
    Released,
    /// The held units left the warehouse.
    Shipped,
    /// Nothing could be reserved.
    Failed,
}

impl Status {
    /// The database representation.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Reserved => "RESERVED",
            Status::Released => "RELEASED",
            Status::Shipped => "SHIPPED",
            Status::Failed => "FAILED",
        }
    }

    /// Parses the database representation.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RESERVED" => Status::Reserved,
            "RELEASED" => Status::Released,
            "SHIPPED" => Status::Shipped,
            "FAILED" => Status::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    fn stock(levels: &[(&str, i32)]) -> HashMap<String, i32> {
        levels.iter().map(|(s, a)| ((*s).to_owned(), *a)).collect()
    }

    #[test]
    fn lines_of_one_sku_are_summed_and_sorted() {
        let per_sku = requested_per_sku(&[line("B", 1), line("A", 2), line("B", 3)]);
        assert_eq!(
            per_sku.into_iter().collect::<Vec<_>>(),
            vec![("A".to_owned(), 2), ("B".to_owned(), 4)]
        );
    }

    #[test]
    fn enough_stock_reserves_everything() {
        let requested = requested_per_sku(&[line("A", 2), line("B", 1)]);
        let decision = decide(&requested, &stock(&[("A", 2), ("B", 5)]));
        assert_eq!(decision, Decision::Reserve(requested));
    }

    #[test]
    fn summed_lines_can_exceed_stock_even_if_each_fits() {
        let requested = requested_per_sku(&[line("A", 2), line("A", 2)]);
        let decision = decide(&requested, &stock(&[("A", 3)]));
        assert_eq!(
            decision,
            Decision::Fail {
                reason: "insufficient stock for A (requested 4, available 3)".into(),
                skus: vec!["A".into()],
            }
        );
    }

    #[test]
    fn every_problem_is_named_and_nothing_is_reserved() {
        let requested = requested_per_sku(&[line("SKU-9", 1), line("SKU-1", 2), line("SKU-2", 1)]);
        let decision = decide(&requested, &stock(&[("SKU-1", 1), ("SKU-2", 10)]));
        assert_eq!(
            decision,
            Decision::Fail {
                reason:
                    "insufficient stock for SKU-1 (requested 2, available 1); unknown SKU SKU-9"
                        .into(),
                skus: vec!["SKU-1".into(), "SKU-9".into()],
            }
        );
    }

    #[test]
    fn zero_stock_is_known_but_short() {
        let requested = requested_per_sku(&[line("A", 1)]);
        assert!(matches!(
            decide(&requested, &stock(&[("A", 0)])),
            Decision::Fail { skus, .. } if skus == vec!["A".to_owned()]
        ));
    }

    #[test]
    fn invalid_lines_are_reported() {
        assert!(invalid_lines(&[]).is_some());
        assert_eq!(
            invalid_lines(&[line("A", 1), line("B", 0)]).as_deref(),
            Some("items[1] (B) has quantity 0")
        );
        assert_eq!(invalid_lines(&[line("A", 1)]), None);
    }

    #[test]
    fn status_round_trips() {
        for s in [
            Status::Reserved,
            Status::Released,
            Status::Shipped,
            Status::Failed,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("reserved"), None);
    }
}

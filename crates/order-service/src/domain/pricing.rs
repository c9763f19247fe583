//! Prices belong to the catalog: every order line is priced from the
//! catalog price of its SKU (inventory's, learned from `InventoryAdjusted`),
//! and the total is computed here. A client may send `unitPrice` (what it
//! showed the customer): when that differs from the catalog the order is
//! refused, so nobody pays a price they did not see, or one they chose.

use std::collections::HashMap;

use orderflow_events::events::OrderLine;
use serde::Serialize;

/// A line whose sent `unitPrice` is not the catalog's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    /// The SKU.
    pub sku: String,
    /// What the client sent.
    pub unit_price: i64,
    /// The catalog price.
    pub catalog_price: i64,
}

/// Why an order cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    /// These SKUs have no catalog price yet.
    Unpriced(Vec<String>),
    /// These SKUs are priced in another currency: `(sku, currency)`.
    Currency(Vec<(String, String)>),
    /// Sent unit prices that are not the catalog's.
    Mismatch(Vec<Mismatch>),
    /// The total does not fit in 64 bits.
    TooLarge,
}

/// Prices `lines` (whose `unit_price` is ignored) in `currency` from
/// `catalog` (SKU → amount and currency, `None` when unpriced); `sent` is
/// the client's `unitPrice` of each line, if it sent one. Returns the
/// priced lines and their total. Every SKU of `lines` must be in
/// `catalog` (unknown SKUs are refused before).
pub fn price(
    lines: &[OrderLine],
    sent: &[Option<i64>],
    currency: &str,
    catalog: &HashMap<String, Option<(i64, String)>>,
) -> Result<(Vec<OrderLine>, i64), PriceError> {
    let mut unpriced = Vec::new();
    let mut other_currency = Vec::new();
    let mut mismatches = Vec::new();
    let mut priced = Vec::with_capacity(lines.len());
    let mut total: Option<i64> = Some(0);
    for (line, sent) in lines.iter().zip(sent) {
        let Some((amount, cur)) = catalog.get(&line.sku).and_then(Option::as_ref) else {
            unpriced.push(line.sku.clone());
            continue;
        };
        if cur != currency {
            other_currency.push((line.sku.clone(), cur.clone()));
            continue;
        }
        if let Some(sent) = *sent {
            if sent != *amount {
                mismatches.push(Mismatch {
                    sku: line.sku.clone(),
                    unit_price: sent,
                    catalog_price: *amount,
                });
            }
        }
        total = total
            .and_then(|t| {
                i64::from(line.quantity)
                    .checked_mul(*amount)
                    .map(|l| (t, l))
            })
            .and_then(|(t, l)| t.checked_add(l));
        priced.push(OrderLine {
            unit_price: *amount,
            ..line.clone()
        });
    }
    if !unpriced.is_empty() {
        return Err(PriceError::Unpriced(unpriced));
    }
    if !other_currency.is_empty() {
        return Err(PriceError::Currency(other_currency));
    }
    if !mismatches.is_empty() {
        return Err(PriceError::Mismatch(mismatches));
    }
    total.map(|t| (priced, t)).ok_or(PriceError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i32) -> OrderLine {
        OrderLine {
            sku: sku.into(),
            quantity,
            unit_price: 0,
        }
    }

    fn catalog() -> HashMap<String, Option<(i64, String)>> {
        HashMap::from([
            ("A".into(), Some((1999, "EUR".into()))),
            ("B".into(), Some((500, "EUR".into()))),
            ("U".into(), None),
            ("G".into(), Some((700, "GBP".into()))),
        ])
    }

    #[test]
    fn lines_are_priced_from_the_catalog_and_the_total_computed() {
        let (lines, total) = price(
            &[line("A", 2), line("B", 1)],
            &[None, Some(500)],
            "EUR",
            &catalog(),
        )
        .expect("priced");
        assert_eq!(total, 2 * 1999 + 500);
        assert_eq!(
            lines.iter().map(|l| l.unit_price).collect::<Vec<_>>(),
            [1999, 500]
        );
    }

    #[test]
    fn a_sent_price_that_is_not_the_catalogs_is_refused() {
        for sent in [0, 1, 1998, 2000] {
            let err = price(&[line("A", 1)], &[Some(sent)], "EUR", &catalog()).unwrap_err();
            assert_eq!(
                err,
                PriceError::Mismatch(vec![Mismatch {
                    sku: "A".into(),
                    unit_price: sent,
                    catalog_price: 1999
                }])
            );
        }
    }

    #[test]
    fn unpriced_skus_and_other_currencies_are_refused() {
        assert_eq!(
            price(
                &[line("A", 1), line("U", 1)],
                &[None, None],
                "EUR",
                &catalog()
            )
            .unwrap_err(),
            PriceError::Unpriced(vec!["U".into()])
        );
        assert_eq!(
            price(&[line("G", 1)], &[None], "EUR", &catalog()).unwrap_err(),
            PriceError::Currency(vec![("G".into(), "GBP".into())])
        );
        let huge = HashMap::from([("A".into(), Some((i64::MAX / 2, "EUR".into())))]);
        assert_eq!(
            price(&[line("A", 3)], &[None], "EUR", &huge).unwrap_err(),
            PriceError::TooLarge
        );
    }
}

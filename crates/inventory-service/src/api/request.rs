//! Request bodies and headers of the inventory API, and their checks.

use axum::http::{header, HeaderMap};
use orderflow_service::error::FieldProblem;
use orderflow_service::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::db::StockLevel;

/// Longest SKU accepted.
pub const MAX_SKU_LEN: usize = 64;
/// Largest stock level accepted.
pub const MAX_AVAILABLE: i64 = 1_000_000_000;

/// Body of `PUT /inventory/{sku}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetStock {
    /// Units available to reserve (absolute, not a delta).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub available: i64,
    /// Catalog price of one unit in minor units of `currency`, with
    /// `currency`; the order service prices order lines from it. Left as it
    /// was when both are absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100_000_000, nullable = false)]
    pub price: Option<i64>,
    /// ISO 4217 code of `price`.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$", nullable = false)]
    pub currency: Option<String>,
}

/// Largest catalog price of one unit (minor units), as the order service
/// accepts.
pub const MAX_PRICE: i64 = 100_000_000;

/// Body of `POST /inventory/{sku}/adjustments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdjustStock {
    /// Units to add to `available` (negative: to take away); not 0.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
}

/// What is wrong with `sku`, if anything: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`.
pub fn sku_problem(sku: &str) -> Option<String> {
    if sku.is_empty() || sku.len() > MAX_SKU_LEN {
        return Some(format!("must be 1 to {MAX_SKU_LEN} characters long"));
    }
    if !sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may only contain letters, digits, '.', '_' and '-'".to_owned());
    }
    None
}

/// Every problem of a `PUT` request; empty when it is valid.
pub fn validate_put(sku: &str, body: &SetStock) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if let Some(p) = sku_problem(sku) {
        problems.push(FieldProblem::new("sku", p));
    }
    if !(0..=MAX_AVAILABLE).contains(&body.available) {
        problems.push(FieldProblem::new(
            "available",
            format!("must be between 0 and {MAX_AVAILABLE}"),
        ));
    }
    match (&body.price, &body.currency) {
        (None, None) => {}
        (Some(_), None) => problems.push(FieldProblem::new("currency", "is required with price")),
        (None, Some(_)) => problems.push(FieldProblem::new("price", "is required with currency")),
        (Some(price), Some(currency)) => {
            if !(1..=MAX_PRICE).contains(price) {
                problems.push(FieldProblem::new(
                    "price",
                    format!("must be between 1 and {MAX_PRICE} (minor units)"),
                ));
            }
            if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                problems.push(FieldProblem::new(
                    "currency",
                    "must be an ISO 4217 code of 3 uppercase letters (e.g. EUR)",
                ));
            }
        }
    }
    problems
}

/// Every problem of an adjustment; empty when it is valid.
pub fn validate_adjust(sku: &str, body: &AdjustStock) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    if let Some(p) = sku_problem(sku) {
        problems.push(FieldProblem::new("sku", p));
    }
    if body.delta == 0 || body.delta.unsigned_abs() > MAX_AVAILABLE.unsigned_abs() {
        problems.push(FieldProblem::new(
            "delta",
            format!("must be between -{MAX_AVAILABLE} and {MAX_AVAILABLE}, and not 0"),
        ));
    }
    problems
}

/// What an `If-Match` header asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the SKU must exist.
    Any,
    /// One of these entity tags (strong comparison: weak tags never match).
    Tags(Vec<String>),
}

impl IfMatch {
    /// Parses the header, if present; a value that is not text is a 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let Some(v) = headers.get(header::IF_MATCH) else {
            return Ok(None);
        };
        let v = v
            .to_str()
            .map_err(|_| ApiError::bad_request("If-Match is not valid text"))?
            .trim();
        if v == "*" {
            return Ok(Some(Self::Any));
        }
        let tags: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if tags.is_empty() {
            return Err(ApiError::bad_request("If-Match is empty"));
        }
        Ok(Some(Self::Tags(tags)))
    }

    /// Whether `current` satisfies the condition.
    pub fn matches(&self, current: Option<&StockLevel>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Self::Any, Some(_)) => true,
            (Self::Tags(tags), Some(level)) => tags.contains(&level.etag()),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_follow_the_documented_alphabet() {
        for ok in ["SKU-1", "a.b_c-9", &"x".repeat(64)] {
            assert_eq!(sku_problem(ok), None, "{ok}");
        }
        for bad in ["", "with space", "slash/y", "ümlaut", &"x".repeat(65)] {
            assert!(sku_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn every_problem_of_a_put_is_listed() {
        let problems = validate_put(
            "bad sku",
            &SetStock {
                available: -1,
                ..SetStock::default()
            },
        );
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["sku", "available"]);
        assert!(validate_put(
            "SKU-1",
            &SetStock {
                available: 0,
                ..SetStock::default()
            }
        )
        .is_empty());
        assert!(validate_put(
            "SKU-1",
            &SetStock {
                available: MAX_AVAILABLE,
                ..SetStock::default()
            }
        )
        .is_empty());
        assert_eq!(
            validate_put(
                "SKU-1",
                &SetStock {
                    available: MAX_AVAILABLE + 1,
                    ..SetStock::default()
                }
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_price_comes_with_its_currency() {
        let put = |price: Option<i64>, currency: Option<&str>| SetStock {
            available: 1,
            price,
            currency: currency.map(str::to_owned),
        };
        assert!(validate_put("SKU-1", &put(None, None)).is_empty());
        assert!(validate_put("SKU-1", &put(Some(1999), Some("EUR"))).is_empty());
        for (price, currency, field) in [
            (Some(1999), None, "currency"),
            (None, Some("EUR"), "price"),
            (Some(0), Some("EUR"), "price"),
            (Some(MAX_PRICE + 1), Some("EUR"), "price"),
            (Some(1999), Some("eur"), "currency"),
            (Some(1999), Some("EURO"), "currency"),
        ] {
            let problems = validate_put("SKU-1", &put(price, currency));
            let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
            assert_eq!(fields, [field], "{price:?} {currency:?}");
        }
    }

    #[test]
    fn unknown_body_fields_are_rejected() {
        let r: Result<SetStock, _> = serde_json::from_str(r#"{"available":1,"reserved":2}"#);
        assert!(r.is_err());
    }

    fn level(available: i32, reserved: i32, shipped: i32) -> StockLevel {
        StockLevel {
            sku: "SKU-1".into(),
            available,
            reserved,
            shipped,
            price: None,
            currency: None,
        }
    }

    fn if_match(value: &str) -> Result<Option<IfMatch>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, value.parse().expect("header value"));
        IfMatch::from_headers(&headers)
    }

    #[test]
    fn the_etag_changes_with_every_column() {
        let tags: std::collections::HashSet<String> = [
            level(5, 0, 0),
            level(4, 1, 0),
            level(4, 0, 1),
            level(5, 0, 1),
        ]
        .iter()
        .map(StockLevel::etag)
        .collect();
        assert_eq!(tags.len(), 4, "{tags:?}");
        assert_eq!(level(5, 1, 2).etag(), r#""5.1.2""#);
    }

    #[test]
    fn if_match_takes_any_or_a_list_of_strong_tags() {
        assert_eq!(IfMatch::from_headers(&HeaderMap::new()).unwrap(), None);
        let current = level(5, 1, 0);
        let any = if_match("*").unwrap().unwrap();
        assert!(any.matches(Some(&current)));
        assert!(!any.matches(None), "* needs the SKU to exist");
        let list = if_match(r#""1.0.0", "5.1.0""#).unwrap().unwrap();
        assert!(list.matches(Some(&current)));
        assert!(!list.matches(Some(&level(4, 2, 0))));
        assert!(!list.matches(None));
        let weak = if_match(r#"W/"5.1.0""#).unwrap().unwrap();
        assert!(!weak.matches(Some(&current)), "weak tags never match");
        assert!(if_match(" , ").is_err());
    }

    #[test]
    fn every_problem_of_an_adjustment_is_listed() {
        let problems = validate_adjust("bad sku", &AdjustStock { delta: 0 });
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["sku", "delta"]);
        for ok in [1, -1, MAX_AVAILABLE, -MAX_AVAILABLE] {
            assert!(
                validate_adjust("SKU-1", &AdjustStock { delta: ok }).is_empty(),
                "{ok}"
            );
        }
        for bad in [MAX_AVAILABLE + 1, -MAX_AVAILABLE - 1, i64::MIN] {
            assert_eq!(
                validate_adjust("SKU-1", &AdjustStock { delta: bad }).len(),
                1,
                "{bad}"
            );
        }
    }
}

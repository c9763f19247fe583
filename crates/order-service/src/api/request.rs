//! The `POST /orders` body, its validation and its canonical hash (for
//! `Idempotency-Key`).

use std::collections::HashMap;

use orderflow_events::events::{Address, OrderLine};
use orderflow_service::error::FieldProblem;

pub use crate::domain::acceptance::ValidatedOrder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Most lines in one order.
pub const MAX_LINES: usize = 50;
/// Most units of one line.
pub const MAX_QUANTITY: i64 = 1000;
/// Highest unit price in minor units.
pub const MAX_UNIT_PRICE: i64 = 100_000_000;
/// Longest SKU.
pub const MAX_SKU_LEN: usize = 64;
/// Longest customer id.
pub const MAX_CUSTOMER_ID_LEN: usize = 100;
/// Longest e-mail address.
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest address field.
pub const MAX_ADDRESS_FIELD_LEN: usize = 200;

/// Body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = CreateOrder)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOrderRequest {
    /// The customer the order is for. A customer's token names it (the
    /// body may repeat it; another id is 403); a service token must name
    /// it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub customer_id: Option<String>,
    /// Shape `local@domain.tld`.
    #[schema(max_length = 254)]
    pub email: String,
    /// ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// One line per SKU (no duplicate SKUs).
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<ItemRequest>,
    /// Where to ship.
    pub shipping_address: AddressRequest,
    /// The payment method to charge: the `paymentMethodId` that `POST
    /// /payment-methods` on the payment service returned for the customer's
    /// card. Card tokens are not accepted here (a `paymentToken` field is
    /// refused with 422 naming it), so no card data reaches the order
    /// service or the topics. Whether the method exists and is the
    /// customer's is checked when the payment service charges: if not, the
    /// order is cancelled (`PAYMENT_DECLINED`, decline code
    /// `invalid_payment_method`). (Optional in the code so that its absence
    /// is a validation problem listed with the others.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true, nullable = false, pattern = "^pm_[0-9a-fA-F]{32}$")]
    pub payment_method_id: Option<String>,
    /// Refused: card tokens go to the payment service, not into orders and
    /// events. Read only to say so clearly (not in the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub payment_token: Option<String>,
}

/// One order line of `POST /orders`. (Numbers are `i64` so that negative
/// or huge values are validation errors naming the field, not parse
/// errors.)
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = OrderLineRequest)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ItemRequest {
    /// SKU.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// Units.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
    /// The unit price the client showed, in minor units. Optional: lines
    /// are priced from the catalog (inventory's price of the SKU), and a
    /// different price here refuses the order (409 `price_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100_000_000, nullable = false)]
    pub unit_price: Option<i64>,
}

/// The shipping address of `POST /orders`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(as = Address)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressRequest {
    /// Recipient name.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// First line.
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    /// Optional second line; omitted in responses when absent or empty.
    #[serde(default)]
    #[schema(max_length = 200, nullable = false)]
    pub line2: Option<String>,
    /// City.
    #[schema(min_length = 1, max_length = 200)]
    pub city: String,
    /// Postal code.
    #[schema(min_length = 1, max_length = 200)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

/// SHA-256 (hex) of the canonical form of the request: the parsed struct
/// serialised again, so whitespace and key order do not matter.
pub fn request_hash(req: &CreateOrderRequest) -> Result<String, serde_json::Error> {
    let bytes = serde_json::to_vec(req)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Checks every field; returns the order or every problem found.
pub fn validate(req: &CreateOrderRequest) -> Result<ValidatedOrder, Vec<FieldProblem>> {
    let mut p = Vec::new();
    let customer_id = req.customer_id.as_deref().unwrap_or_default();
    text(&mut p, "customerId", customer_id, MAX_CUSTOMER_ID_LEN);
    if let Some(problem) = email_problem(&req.email) {
        p.push(FieldProblem::new("email", problem));
    }
    if !is_upper_letters(&req.currency, 3) {
        p.push(FieldProblem::new(
            "currency",
            "must be an ISO 4217 code of 3 uppercase letters (e.g. EUR)",
        ));
    }

    if req.items.is_empty() {
        p.push(FieldProblem::new("items", "must contain at least 1 line"));
    } else if req.items.len() > MAX_LINES {
        p.push(FieldProblem::new(
            "items",
            format!("must contain at most {MAX_LINES} lines"),
        ));
    }
    let mut first_line_of: HashMap<&str, usize> = HashMap::new();
    for (i, item) in req.items.iter().enumerate() {
        let field = |name: &str| format!("items[{i}].{name}");
        if let Some(problem) = sku_problem(&item.sku) {
            p.push(FieldProblem::new(field("sku"), problem));
        } else if let Some(first) = first_line_of.get(item.sku.as_str()) {
            p.push(FieldProblem::new(
                field("sku"),
                format!("duplicates items[{first}].sku; put each SKU on one line"),
            ));
        } else {
            first_line_of.insert(&item.sku, i);
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            p.push(FieldProblem::new(
                field("quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        if item
            .unit_price
            .is_some_and(|p| !(0..=MAX_UNIT_PRICE).contains(&p))
        {
            p.push(FieldProblem::new(
                field("unitPrice"),
                format!("must be between 0 and {MAX_UNIT_PRICE} (minor units)"),
            ));
        }
    }

    let a = &req.shipping_address;
    text(
        &mut p,
        "shippingAddress.name",
        &a.name,
        MAX_ADDRESS_FIELD_LEN,
    );
    text(
        &mut p,
        "shippingAddress.line1",
        &a.line1,
        MAX_ADDRESS_FIELD_LEN,
    );
    if let Some(line2) = &a.line2 {
        if line2.chars().count() > MAX_ADDRESS_FIELD_LEN {
            p.push(FieldProblem::new(
                "shippingAddress.line2",
                format!("must be at most {MAX_ADDRESS_FIELD_LEN} characters"),
            ));
        }
    }
    text(
        &mut p,
        "shippingAddress.city",
        &a.city,
        MAX_ADDRESS_FIELD_LEN,
    );
    text(
        &mut p,
        "shippingAddress.postalCode",
        &a.postal_code,
        MAX_ADDRESS_FIELD_LEN,
    );
    if !is_upper_letters(&a.country, 2) {
        p.push(FieldProblem::new(
            "shippingAddress.country",
            "must be an ISO 3166-1 alpha-2 code of 2 uppercase letters (e.g. DE)",
        ));
    }
    match req.payment_method_id.as_deref() {
        None => p.push(FieldProblem::new(
            "paymentMethodId",
            "is required: register the card token with the payment service \
             (POST /payment-methods) and send the id it returns",
        )),
        Some(id) if !is_payment_method_id(id) => p.push(FieldProblem::new(
            "paymentMethodId",
            "must be a payment method id: pm_ and 32 hex digits",
        )),
        Some(_) => {}
    }
    if req.payment_token.is_some() {
        p.push(FieldProblem::new(
            "paymentToken",
            "card tokens are not accepted in orders: register it with the payment \
             service (POST /payment-methods) and send paymentMethodId",
        ));
    }

    if !p.is_empty() {
        return Err(p);
    }

    let mut items = Vec::with_capacity(req.items.len());
    let mut total: Option<i64> = Some(0);
    for item in &req.items {
        total = total
            .and_then(|t| {
                item.quantity
                    .checked_mul(item.unit_price.unwrap_or(0))
                    .map(|l| (t, l))
            })
            .and_then(|(t, l)| t.checked_add(l));
        let Ok(quantity) = i32::try_from(item.quantity) else {
            // Unreachable after the range check, but never truncate.
            return Err(vec![FieldProblem::new("items", "quantity out of range")]);
        };
        items.push(OrderLine {
            sku: item.sku.clone(),
            quantity,
            unit_price: item.unit_price.unwrap_or(0),
        });
    }
    let Some(total) = total else {
        return Err(vec![FieldProblem::new(
            "items",
            "the order total is too large",
        )]);
    };
    Ok(ValidatedOrder {
        customer_id: customer_id.to_owned(),
        email: req.email.clone(),
        currency: req.currency.clone(),
        items,
        total,
        shipping_address: Address {
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone().filter(|l| !l.trim().is_empty()),
            city: a.city.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        },
        payment_method_id: req.payment_method_id.clone().unwrap_or_default(),
    })
}

/// Whether `id` has the shape of a payment method id: `pm_` and 32 hex
/// digits. Whether it exists and is the customer's is the payment service's
/// to say when it charges.
pub fn is_payment_method_id(id: &str) -> bool {
    id.strip_prefix("pm_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A required text field of at most `max` characters, not blank.
fn text(p: &mut Vec<FieldProblem>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        p.push(FieldProblem::new(field, "must not be empty"));
    } else if value.chars().count() > max {
        p.push(FieldProblem::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

fn is_upper_letters(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// What is wrong with a SKU, if anything.
pub fn sku_problem(sku: &str) -> Option<String> {
    if sku.is_empty() {
        Some("must not be empty".to_owned())
    } else if sku.len() > MAX_SKU_LEN {
        Some(format!("must be at most {MAX_SKU_LEN} characters"))
    } else if !sku
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may only contain letters, digits, '.', '_' and '-'".to_owned())
    } else {
        None
    }
}

/// What is wrong with an e-mail address, if anything: the simple shape
/// `local@domain.tld`, at most 254 characters.
pub fn email_problem(email: &str) -> Option<String> {
    const SHAPE: &str = "must be an e-mail address like name@example.com";
    if email.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if email.chars().count() > MAX_EMAIL_LEN {
        return Some(format!("must be at most {MAX_EMAIL_LEN} characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some(SHAPE.to_owned());
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"@<>(),;:\"[]\\".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    if local_ok && domain_ok {
        None
    } else {
        Some(SHAPE.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> serde_json::Value {
        json!({
            "customerId": "c-1",
            "email": "ann@example.com",
            "currency": "EUR",
            "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": 1999},
                      {"sku": "SKU-2", "quantity": 1, "unitPrice": 500}],
            "shippingAddress": {"name": "Ann", "line1": "Main St 1", "city": "Berlin",
                                "postalCode": "10115", "country": "DE"},
            "paymentMethodId": "pm_0123456789abcdef0123456789abcdef"
        })
    }

    fn parse(v: serde_json::Value) -> CreateOrderRequest {
        serde_json::from_value(v).expect("parses")
    }

    fn fields(v: serde_json::Value) -> Vec<String> {
        validate(&parse(v))
            .expect_err("invalid")
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn a_valid_request_computes_the_total() {
        let order = validate(&parse(valid())).expect("valid");
        assert_eq!(order.total, 2 * 1999 + 500);
        assert_eq!(order.items.len(), 2);
        assert_eq!(order.items[0].quantity, 2);
        assert_eq!(order.shipping_address.line2, None);
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let mut v = valid();
        v["extra"] = json!(1);
        assert!(serde_json::from_value::<CreateOrderRequest>(v).is_err());
        let mut v = valid();
        v["items"][0]["colour"] = json!("red");
        assert!(serde_json::from_value::<CreateOrderRequest>(v).is_err());
        let mut v = valid();
        v["shippingAddress"]["state"] = json!("BE");
        assert!(serde_json::from_value::<CreateOrderRequest>(v).is_err());
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let v = json!({
            "customerId": "",
            "email": "not-an-email",
            "currency": "eur",
            "items": [{"sku": "bad sku!", "quantity": 0, "unitPrice": -1},
                      {"sku": "SKU-1", "quantity": 1001, "unitPrice": 100_000_001i64},
                      {"sku": "SKU-1", "quantity": -5, "unitPrice": 1}],
            "shippingAddress": {"name": " ", "line1": "x".repeat(201), "line2": "y".repeat(201),
                                "city": "", "postalCode": "", "country": "de"},
            "paymentMethodId": "pm_123",
            "paymentToken": "tok_visa"
        });
        assert_eq!(
            fields(v),
            vec![
                "customerId",
                "email",
                "currency",
                "items[0].sku",
                "items[0].quantity",
                "items[0].unitPrice",
                "items[1].quantity",
                "items[1].unitPrice",
                "items[2].sku",
                "items[2].quantity",
                "shippingAddress.name",
                "shippingAddress.line1",
                "shippingAddress.line2",
                "shippingAddress.city",
                "shippingAddress.postalCode",
                "shippingAddress.country",
                "paymentMethodId",
                "paymentToken",
            ]
        );
    }

    #[test]
    fn a_card_token_is_refused_and_a_payment_method_required() {
        let mut v = valid();
        v.as_object_mut().expect("object").remove("paymentMethodId");
        v["paymentToken"] = json!("tok_visa");
        let problems = validate(&parse(v)).expect_err("refused");
        let named: Vec<(&str, bool)> = problems
            .iter()
            .map(|p| {
                (
                    p.field.as_str(),
                    p.problem.contains("POST /payment-methods"),
                )
            })
            .collect();
        assert_eq!(named, [("paymentMethodId", true), ("paymentToken", true)]);
        for bad in [
            "pm_",
            "pm_0123",
            "tok_visa",
            &format!("pm_{}", "G".repeat(32)),
        ] {
            let mut v = valid();
            v["paymentMethodId"] = json!(bad);
            assert_eq!(fields(v), vec!["paymentMethodId"], "{bad}");
        }
    }

    #[test]
    fn line_count_limits() {
        let mut v = valid();
        v["items"] = json!([]);
        assert_eq!(fields(v), vec!["items"]);
        let mut v = valid();
        v["items"] = (0..51)
            .map(|i| json!({"sku": format!("S{i}"), "quantity": 1, "unitPrice": 1}))
            .collect();
        assert_eq!(fields(v), vec!["items"]);
        let mut v = valid();
        v["items"] = (0..50)
            .map(|i| json!({"sku": format!("S{i}"), "quantity": 1000, "unitPrice": MAX_UNIT_PRICE}))
            .collect();
        let order = validate(&parse(v)).expect("50 lines at the limits are fine");
        assert_eq!(order.total, 50 * 1000 * MAX_UNIT_PRICE);
    }

    #[test]
    fn huge_numbers_are_validation_errors() {
        let mut v = valid();
        v["items"][0]["quantity"] = json!(i64::MAX);
        v["items"][0]["unitPrice"] = json!(i64::MAX);
        assert_eq!(fields(v), vec!["items[0].quantity", "items[0].unitPrice"]);
    }

    #[test]
    fn limits_are_inclusive() {
        let mut v = valid();
        v["customerId"] = json!("c".repeat(100));
        v["items"][0]["sku"] = json!("A".repeat(64));
        v["items"][0]["unitPrice"] = json!(0);
        v["shippingAddress"]["line2"] = json!("z".repeat(200));
        assert!(validate(&parse(v)).is_ok());
        let mut v = valid();
        v["customerId"] = json!("c".repeat(101));
        v["items"][0]["sku"] = json!("A".repeat(65));
        assert_eq!(fields(v), vec!["customerId", "items[0].sku"]);
    }

    #[test]
    fn emails() {
        for ok in [
            "ann@example.com",
            "a.b+c@mail.example.co",
            "x_y-z@sub-domain.example.org",
        ] {
            assert_eq!(email_problem(ok), None, "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "ann@example.",
            "ann@.com",
            "ann@exa mple.com",
            "an n@example.com",
            "ann@@example.com",
            "ann@example.c",
            "ann@-example.com",
            "ann@example.123",
            long.as_str(),
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn skus() {
        assert_eq!(sku_problem("SKU-1.a_b"), None);
        assert!(sku_problem("").is_some());
        assert!(sku_problem("a b").is_some());
        assert!(sku_problem("ä").is_some());
        assert!(sku_problem(&"x".repeat(65)).is_some());
    }

    #[test]
    fn the_hash_ignores_formatting_but_not_content() {
        let a = parse(valid());
        let text = r#"{"paymentMethodId":"pm_0123456789abcdef0123456789abcdef","shippingAddress":{"country":"DE","postalCode":"10115",
            "city":"Berlin","line1":"Main St 1","name":"Ann"},"items":[{"unitPrice":1999,"quantity":2,"sku":"SKU-1"},
            {"sku":"SKU-2","quantity":1,"unitPrice":500}],"currency":"EUR","email":"ann@example.com","customerId":"c-1"}"#;
        let b: CreateOrderRequest = serde_json::from_str(text).expect("parses");
        assert_eq!(
            request_hash(&a).expect("hash"),
            request_hash(&b).expect("hash")
        );
        let mut v = valid();
        v["items"][0]["quantity"] = json!(3);
        assert_ne!(
            request_hash(&a).expect("hash"),
            request_hash(&parse(v)).expect("hash")
        );
        assert_eq!(request_hash(&a).expect("hash").len(), 64);
    }
}

//! Request bodies for `POST /orders`.

use serde_json::{json, Value};

/// Builder of a valid `POST /orders` body (one line by default).
#[derive(Debug, Clone)]
pub struct OrderBody {
    /// `customerId`.
    pub customer_id: String,
    /// `email`.
    pub email: String,
    /// `currency`.
    pub currency: String,
    /// `(sku, quantity, unitPrice)` lines.
    pub items: Vec<(String, i64, i64)>,
    /// The card token its payment method is registered with
    /// ([`crate::Stack::order_json`] registers it and names the method).
    pub payment_token: String,
}

impl OrderBody {
    /// `quantity` units of `sku` at 19.99 EUR (the catalog price
    /// `Stack::set_stock` sets), paid with `tok_visa`, by a customer unique
    /// to this body.
    pub fn new(sku: &str, quantity: i64) -> Self {
        let customer = format!("c-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self {
            email: format!("{customer}@example.com"),
            customer_id: customer,
            currency: "EUR".into(),
            items: vec![(sku.to_owned(), quantity, 1999)],
            payment_token: "tok_visa".into(),
        }
    }

    /// Sets the customer id (and an e-mail address derived from it).
    pub fn customer(mut self, customer_id: &str) -> Self {
        self.customer_id = customer_id.to_owned();
        self.email = format!("{customer_id}@example.com");
        self
    }

    /// Sets the e-mail address.
    pub fn email(mut self, email: &str) -> Self {
        self.email = email.to_owned();
        self
    }

    /// Sets the payment token (e.g. `tok_chargeDeclined`).
    pub fn token(mut self, token: &str) -> Self {
        self.payment_token = token.to_owned();
        self
    }

    /// Sets the `unitPrice` of every line (it must be the catalog price).
    pub fn price(mut self, unit_price: i64) -> Self {
        for item in &mut self.items {
            item.2 = unit_price;
        }
        self
    }

    /// Adds a line.
    pub fn item(mut self, sku: &str, quantity: i64, unit_price: i64) -> Self {
        self.items.push((sku.to_owned(), quantity, unit_price));
        self
    }

    /// Sum of `quantity * unitPrice`.
    pub fn total(&self) -> i64 {
        self.items.iter().map(|(_, q, p)| q * p).sum()
    }

    /// The JSON body, paying with payment method `payment_method_id`
    /// (`Stack::order_json` registers one for the body's token).
    pub fn json_with(&self, payment_method_id: &str) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|(sku, q, p)| json!({"sku": sku, "quantity": q, "unitPrice": p}))
            .collect();
        json!({
            "customerId": self.customer_id,
            "email": self.email,
            "currency": self.currency,
            "items": items,
            "shippingAddress": {
                "name": "Ann Example",
                "line1": "Main St 1",
                "city": "Berlin",
                "postalCode": "10115",
                "country": "DE"
            },
            "paymentMethodId": payment_method_id,
        })
    }
}

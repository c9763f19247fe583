//! Accepting an order: what its first event says. The row that goes with
//! it is [`crate::db::OrderRow::pending`]; the HTTP handler only checks,
//! prices and writes.

use orderflow_events::events::{Address, OrderCreated, OrderLine};
use uuid::Uuid;

/// An order request that passed validation (`api::request::validate`),
/// its lines priced from the catalogue before it is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedOrder {
    /// Customer id.
    pub customer_id: String,
    /// Customer e-mail.
    pub email: String,
    /// Currency.
    pub currency: String,
    /// Lines.
    pub items: Vec<OrderLine>,
    /// Sum of quantity × unit price (the sent prices; the catalog prices
    /// replace both, see `pricing`).
    pub total: i64,
    /// Shipping address (an empty `line2` becomes `None`).
    pub shipping_address: Address,
    /// The payment method (`pm_…`).
    pub payment_method_id: String,
}

/// The `OrderCreated` of order `id`: the lines and total as priced, the
/// payment method by its id (no card data in events).
pub fn order_created(id: Uuid, order: &ValidatedOrder) -> OrderCreated {
    OrderCreated {
        order_id: id.to_string(),
        customer_id: order.customer_id.clone(),
        email: order.email.clone(),
        currency: order.currency.clone(),
        items: order.items.clone(),
        total: order.total,
        shipping_address: order.shipping_address.clone(),
        payment_token: None,
        payment_method_id: Some(order.payment_method_id.clone()),
    }
}

//! One handler per consumed event. Each runs inside the consumer's
//! transaction (which also records the event in the inbox), so the payment
//! row and its outgoing event commit together.

mod inventory_reserved;
mod order_cancelled;

pub use inventory_reserved::OnInventoryReserved;
pub use order_cancelled::OnOrderCancelled;

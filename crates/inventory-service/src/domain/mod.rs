//! The inventory decisions, free of I/O: whether an order's lines can be
//! reserved ([`reservation`]) and how a batch of saga events moves stock
//! ([`ledger`]). The handlers lock the rows, ask these, and write what they
//! answer.

pub mod ledger;
pub mod reservation;

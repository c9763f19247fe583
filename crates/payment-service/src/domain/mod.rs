//! The payment decisions, free of I/O: what the simulated gateway answers
//! for a token and an amount ([`gateway`]), and which token an order is
//! charged with ([`methods`]). Whether a charge may happen at all (not twice,
//! not after a cancellation) is decided under the payment row's lock in
//! [`crate::handlers`].

pub mod gateway;
pub mod methods;

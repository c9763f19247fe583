//! The order decisions, free of I/O: the saga's status machine and what
//! each event means to it ([`saga`]), pricing from the catalogue
//! ([`pricing`]), the causal order of a timeline ([`timeline`]), and the
//! counters each decision moves ([`metrics`], in-process only).

pub mod acceptance;
pub mod metrics;
pub mod pricing;
pub mod saga;
pub mod timeline;

//! The inventory service's own settings: none beyond the shared
//! [`orderflow_service::CommonConfig`]. The struct is here so that every
//! service has the same shape.

/// Settings only the inventory service has (none).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {}

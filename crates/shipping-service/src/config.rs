//! The shipping service's own settings; the shared ones are
//! [`orderflow_service::CommonConfig`].

/// Settings only the shipping service has.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Carrier named on every new shipment.
    #[arg(long, env = "SHIPPING_CARRIER", default_value = "OrderFlow Post")]
    pub shipping_carrier: String,
}

impl Settings {
    /// Refuses settings the service cannot run with.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.shipping_carrier.trim().is_empty(),
            "SHIPPING_CARRIER must not be empty"
        );
        Ok(())
    }
}

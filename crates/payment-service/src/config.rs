//! The payment service's own settings; the shared ones are
//! [`orderflow_service::CommonConfig`].

/// Default of `PAYMENT_MAX_AMOUNT` (minor units).
pub const DEFAULT_MAX_AMOUNT: i64 = 1_000_000;

/// Settings only the payment service has.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Largest amount (minor units) the simulated gateway accepts; larger
    /// charges are declined with `amount_too_large`.
    #[arg(long, env = "PAYMENT_MAX_AMOUNT", default_value_t = DEFAULT_MAX_AMOUNT,
          value_parser = clap::value_parser!(i64).range(0..))]
    pub payment_max_amount: i64,
}

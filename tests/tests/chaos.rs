//! A short fault campaign (`orderflow_e2e::chaos`): one round of every
//! fault kind while orders, cancels and dispatches run, then every
//! invariant must hold. `scripts/chaos` runs longer ones
//! (`docs/reliability.md`). `ORDERFLOW_CHAOS_SEED` picks another seed.

use std::time::Duration;

use orderflow_e2e::chaos::{self, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_fault_campaign_breaks_no_invariant() {
    let seed = std::env::var("ORDERFLOW_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261203);
    let opts = Options {
        seed,
        duration: Duration::from_secs(30),
        rate: 2.0,
        ..Options::default()
    };
    let report = chaos::run(&opts).await.expect("the campaign ran");
    eprintln!("{}", report.table);
    assert_eq!(report.violations(), 0, "{}", report.table);
}

//! Where the infrastructure and the binaries are, from the environment
//! (the stack library's lookups), and what only the tests need: the
//! harness's tokens and the deadline of a saga wait.

use std::time::Duration;

pub use orderflow_stack::env::*;

/// A token of the development key for the harness: roles operator and
/// service, valid for a day.
pub fn harness_token() -> anyhow::Result<String> {
    use orderflow_service::auth::Role;
    token_for("e2e-harness", &[Role::Operator, Role::Service])
}

/// A token of the development key for `sub` with `roles`, valid for a day.
pub fn token_for(sub: &str, roles: &[orderflow_service::auth::Role]) -> anyhow::Result<String> {
    use orderflow_service::auth;
    let key = std::fs::read(dev_key("jwt-dev.key.pem"))?;
    let claims = auth::claims(sub, roles, "orderflow", "orderflow", 86_400);
    auth::mint(&claims, &key)
}

/// Deadline of one saga wait (`ORDERFLOW_E2E_TIMEOUT_SECS`, default 90 s:
/// generous, CI machines have 2 cores and run two stacks at once).
pub fn saga_timeout() -> Duration {
    let secs = std::env::var("ORDERFLOW_E2E_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(90);
    Duration::from_secs(secs)
}

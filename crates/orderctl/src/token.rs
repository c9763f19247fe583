//! `orderctl token`: signs a bearer token for the HTTP APIs with an Ed25519
//! private key, by default the development key of `deploy/dev-keys/`
//! (whose public half `scripts/up` and the tests give the services).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use orderflow_service::auth::{self, Role};
use orderflow_service::config::parse_duration;

/// The development signing key, relative to the workspace root.
pub const DEV_KEY: &str = "deploy/dev-keys/jwt-dev.key.pem";

/// `orderctl token` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subject: the customer id for a customer, a name for an operator or
    /// a service.
    #[arg(long)]
    pub sub: String,
    /// Role (repeat for several): customer, operator, service.
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Lifetime (e.g. 30m, 12h).
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Where the signing key is and what the tokens say about their issuer.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Ed25519 private key (PEM) that signs the token.
    #[arg(long, env = "ORDERFLOW_TOKEN_KEY_FILE", default_value = DEV_KEY)]
    pub key_file: PathBuf,
    /// `iss` of the token (the services' AUTH_ISSUER).
    #[arg(long, env = "AUTH_ISSUER", default_value = "orderflow")]
    pub issuer: String,
    /// `aud` of the token (the services' AUTH_AUDIENCE).
    #[arg(long, env = "AUTH_AUDIENCE", default_value = "orderflow")]
    pub audience: String,
}

impl KeyArgs {
    /// A token for `sub` with `roles`, valid for `ttl`.
    pub fn mint(&self, sub: &str, roles: &[Role], ttl: Duration) -> anyhow::Result<String> {
        anyhow::ensure!(!sub.trim().is_empty(), "--sub must not be empty");
        let key = read_key(&self.key_file)?;
        let claims = auth::claims(sub, roles, &self.issuer, &self.audience, ttl.as_secs());
        auth::mint(&claims, &key)
    }
}

fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading the signing key {} (run from the repository root for the development \
             key, or set --key-file / ORDERFLOW_TOKEN_KEY_FILE)",
            path.display()
        )
    })
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: use customer, operator or service"))
}

/// Prints the token.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    println!("{}", args.key.mint(&args.sub, &args.roles, args.ttl)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_unknown_ones_are_refused() {
        assert_eq!(parse_role("customer"), Ok(Role::Customer));
        assert!(parse_role("root").is_err());
    }

    #[test]
    fn a_token_verifies_with_the_development_public_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let key = KeyArgs {
            key_file: root.join(DEV_KEY),
            issuer: "orderflow".into(),
            audience: "orderflow".into(),
        };
        let token = key
            .mint("c-1", &[Role::Customer], Duration::from_secs(60))
            .expect("mint");
        let public = std::fs::read(root.join("deploy/dev-keys/jwt-dev.pub.pem")).expect("pub");
        let v = auth::Verifier::new(&public, "orderflow", "orderflow").expect("verifier");
        let c = v.verify(&token).expect("valid");
        assert_eq!((c.sub.as_str(), c.roles), ("c-1", vec![Role::Customer]));
        assert!(key
            .mint(" ", &[Role::Customer], Duration::from_secs(60))
            .is_err());
    }
}

//! The least-privilege roles a stack's services run as, made by the same
//! SQL as `scripts/up` and compose use (`deploy/postgres/service-roles.sql`):
//! per service an owner role that runs the migrations and an app role that
//! only reads and writes rows. The roles are the cluster's, shared by every
//! stack; each stack's databases are granted to them.

use std::time::Duration;

use anyhow::Context as _;

use super::Service;
use crate::env;

/// The role that owns `svc`'s schema and runs its migrations.
pub fn owner(svc: Service) -> String {
    format!("orderflow_{}_owner", svc.name())
}

/// The role `svc` runs as.
pub fn app(svc: Service) -> String {
    format!("orderflow_{}_app", svc.name())
}

/// `url` (a database URL with the admin's credentials) as `role`, whose
/// development password is its name.
pub fn as_role(url: &str, role: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(url).context("database URL")?;
    url.set_username(role)
        .map_err(|()| anyhow::anyhow!("cannot set the user of {url}"))?;
    url.set_password(Some(role))
        .map_err(|()| anyhow::anyhow!("cannot set the password of {url}"))?;
    Ok(url.to_string())
}

/// Creates `svc`'s roles if needed and hands database `db` (at
/// `admin_db_url`, as the admin) to them. Stacks start in parallel and the
/// roles are shared, so a conflicting concurrent change is retried.
pub async fn grant(admin_db_url: &str, db: &str, svc: Service) -> anyhow::Result<()> {
    let sql = env::workspace_root().join("deploy/postgres/service-roles.sql");
    let (owner, app) = (owner(svc), app(svc));
    let mut attempt = 1;
    loop {
        let out = tokio::process::Command::new("psql")
            .arg(admin_db_url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", &format!("db={db}")])
            .args(["-v", &format!("owner={owner}")])
            .args(["-v", &format!("app={app}")])
            .args(["-v", &format!("owner_password={owner}")])
            .args(["-v", &format!("app_password={app}")])
            .arg("-f")
            .arg(&sql)
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .output()
            .await
            .context("running psql (PostgreSQL's client) for the service roles")?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let concurrent = ["already exists", "concurrently updated", "duplicate key"]
            .iter()
            .any(|s| stderr.contains(s));
        if !concurrent || attempt == 5 {
            anyhow::bail!("{} on {db}: {stderr}", sql.display());
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
    }
}

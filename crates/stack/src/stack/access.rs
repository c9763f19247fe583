//! Reading a running stack: its URLs, logs, Maildir, databases and a
//! diagnostic dump.

use super::*;

impl Stack {
    /// Base URL of a service (`http://127.0.0.1:<port>`).
    pub fn url(&self, svc: Service) -> String {
        format!("http://127.0.0.1:{}", self.port(svc))
    }

    /// Directory of this stack's logs.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The Maildir the SMTP listener writes to.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Port of the SMTP listener.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// Database URL of a service, as the admin (the service itself runs
    /// as [`roles::app`]).
    pub fn database_url(&self, svc: Service) -> &str {
        &self.database_urls[&svc]
    }

    /// Where the service logs are plus recent warnings and errors of each,
    /// for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = format!("service logs: {}", self.log_dir.display());
        for svc in Service::ALL {
            let path = self.log_dir.join(format!("{}.log", svc.name()));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
                .collect();
            if !bad.is_empty() {
                out.push_str(&format!(
                    "\n--- last warnings/errors of {svc} ({} in total):\n{}",
                    bad.len(),
                    bad[bad.len().saturating_sub(8)..].join("\n")
                ));
            }
        }
        out
    }

    /// A pool on a service's database, for assertions.
    pub async fn db(&self, svc: Service) -> PgPool {
        let mut pools = self.pools.lock().await;
        if let Some(p) = pools.get(&svc) {
            return p.clone();
        }
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.database_urls[&svc])
            .await
            .unwrap_or_else(|e| panic!("connecting to the {svc} database: {e}"));
        pools.insert(svc, pool.clone());
        pool
    }

    /// `SELECT count(*)` with one text parameter on a service's database.
    pub async fn count(&self, svc: Service, sql: &str, param: &str) -> i64 {
        let pool = self.db(svc).await;
        sqlx::query_scalar::<_, i64>(sql)
            .bind(param)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql} on the {svc} database: {e}"))
    }

    /// Runs `orderctl <args>` against this stack (its broker, registry and
    /// topic prefix, plus `env`): whether it exited 0, and its output (with
    /// what it wrote to stderr when it failed).
    pub async fn orderctl(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let out = tokio::process::Command::new(env::bin_dir().join("orderctl"))
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.kafka)
            .env("SCHEMA_REGISTRY_URL", &self.registry_url)
            .env("ORDERFLOW_TOPIC_PREFIX", &self.prefix)
            .envs(env.iter().copied())
            .output()
            .await
            .expect("running orderctl");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            text.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        (out.status.success(), text)
    }
}

//! The infrastructure a stack may run for itself so a test can break it:
//! the SMTP listener (always its own), and on request a broker, a
//! PostgreSQL server and a schema registry ([`StackOptions`]). Each can be
//! stopped and started again on the same port and data.
//!
//! [`StackOptions`]: super::StackOptions

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::Command;
use tokio::sync::Mutex;

use super::{Service, Smtp, Stack};
use crate::env;
use crate::process::{spawn_proc, wait_for_tcp, Proc, Stop};

impl Stack {
    fn own_smtp(&self) -> &Mutex<Proc> {
        self.smtp
            .as_ref()
            .expect("the stack's SMTP listener is not its own (Smtp::External)")
    }

    fn own_broker(&self) -> &Mutex<Proc> {
        self.broker
            .as_ref()
            .expect("the stack has no broker of its own (StackOptions::own_broker)")
    }

    /// Stops the SMTP listener (SIGTERM): the notification service then
    /// cannot send, as when a mail server is down.
    pub async fn stop_smtp(&self) {
        let mut p = self.own_smtp().lock().await;
        p.stop(Stop::Term, &self.pid_dir, &self.id).await;
    }

    /// Process id of the SMTP listener, while it runs.
    pub async fn smtp_pid(&self) -> Option<u32> {
        let p = self.smtp.as_ref()?.lock().await;
        p.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// Starts the SMTP listener again on its port and Maildir.
    pub async fn start_smtp(&self) {
        let mut p = self.own_smtp().lock().await;
        assert!(p.child.is_none(), "start_smtp: already running");
        spawn_proc(&mut p, &self.pid_dir).unwrap_or_else(|e| panic!("starting SMTP: {e:#}"));
        wait_for_tcp(&mut p, self.smtp_port, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("starting SMTP: {e:#}"));
        eprintln!("stack {}: SMTP listener started", self.id);
    }

    /// Stops the stack's own broker with `how`.
    pub async fn stop_broker(&self, how: Stop) -> ExitStatus {
        let mut p = self.own_broker().lock().await;
        p.stop(how, &self.pid_dir, &self.id).await
    }

    /// Starts the stack's own broker again on the same port and data, and
    /// waits until it accepts connections.
    pub async fn start_broker(&self) {
        let mut p = self.own_broker().lock().await;
        assert!(p.child.is_none(), "start_broker: already running");
        spawn_proc(&mut p, &self.pid_dir).unwrap_or_else(|e| panic!("starting the broker: {e:#}"));
        let port = self
            .kafka
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("own broker address has a port");
        wait_for_tcp(&mut p, port, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("starting the broker: {e:#}"));
        eprintln!("stack {}: broker started", self.id);
    }

    /// Waits until the service's consumer holds partitions
    /// (`GET /health/consumers` answers 200): until then it consumes
    /// nothing. After a clean stop of every member this takes the broker's
    /// initial rebalance delay; after a crash, until the broker expires the
    /// dead member. Panics after `timeout`.
    pub async fn wait_assigned(&self, svc: Service, timeout: Duration) {
        if let Err(e) = self.assigned_within(svc, timeout).await {
            panic!("{e:#}\n{}", self.diagnostics());
        }
    }

    /// [`Stack::wait_assigned`], failing after `timeout` with the last
    /// answer.
    pub async fn assigned_within(&self, svc: Service, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/health/consumers", self.url(svc));
        crate::wait::poll_until(timeout, || async {
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!(
                    "{} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|last| {
            anyhow::anyhow!(
                "{svc}'s consumer held no partition within {timeout:?} (GET {url}: {last}); its group did not rebalance"
            )
        })
    }

    fn own(&self, p: &'static str) -> &Mutex<Proc> {
        match p {
            "postgres" => self.postgres.as_ref(),
            _ => self.registry.as_ref(),
        }
        .unwrap_or_else(|| panic!("the stack has no {p} of its own (StackOptions)"))
    }

    /// Stops the stack's own PostgreSQL server: [`Stop::Quit`] is its
    /// immediate shutdown (a crash: no checkpoint, WAL recovery at the next
    /// start); [`Stop::Term`] would wait for every client to leave.
    pub async fn stop_postgres(&self, how: Stop) -> ExitStatus {
        let mut p = self.own("postgres").lock().await;
        p.stop(how, &self.pid_dir, &self.id).await
    }

    /// Starts the stack's own PostgreSQL server again on its port and data.
    pub async fn start_postgres(&self) {
        let mut p = self.own("postgres").lock().await;
        restart(&mut p, &self.pid_dir, port_of(&self.admin_url)).await;
        eprintln!("stack {}: PostgreSQL started", self.id);
    }

    /// Stops the stack's own schema registry.
    pub async fn stop_registry(&self, how: Stop) -> ExitStatus {
        let mut p = self.own("registry").lock().await;
        p.stop(how, &self.pid_dir, &self.id).await
    }

    /// Starts the stack's own schema registry again.
    pub async fn start_registry(&self) {
        let mut p = self.own("registry").lock().await;
        restart(&mut p, &self.pid_dir, port_of(&self.registry_url)).await;
        eprintln!("stack {}: schema registry started", self.id);
    }

    /// The admin URL of the stack's PostgreSQL server.
    pub fn admin_database_url(&self) -> &str {
        &self.admin_url
    }

    /// The stack's schema registry URL.
    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    /// Waits until every service's consumer holds partitions.
    pub async fn wait_all_assigned(&self, timeout: Duration) {
        for svc in Service::ALL {
            self.wait_assigned(svc, timeout).await;
        }
    }
}

async fn restart(p: &mut Proc, pid_dir: &Path, port: u16) {
    assert!(p.child.is_none(), "starting {}: already running", p.name);
    spawn_proc(p, pid_dir).unwrap_or_else(|e| panic!("starting {}: {e:#}", p.name));
    wait_for_tcp(p, port, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("starting {}: {e:#}", p.name));
}

/// The port of a URL (`http://127.0.0.1:8081`, `postgres://…:5432/db`).
pub(crate) fn port_of(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_else(|| panic!("{url} names no port"))
}

/// The newest PostgreSQL server binaries (`ORDERFLOW_PG_BIN_DIR`, else
/// Debian's `/usr/lib/postgresql/<version>/bin`).
fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ORDERFLOW_PG_BIN_DIR").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install PostgreSQL (scripts/test does) or set ORDERFLOW_PG_BIN_DIR")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
}

/// PostgreSQL refuses to run as root: then it runs as the `postgres` user
/// (`setpriv`, which execs, so the pid is the server's own).
async fn as_postgres_user() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .await
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn command_for(root: bool, program: PathBuf, args: Vec<String>) -> (PathBuf, Vec<String>) {
    if !root {
        return (program, args);
    }
    let mut all: Vec<String> = [
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ]
    .map(str::to_owned)
    .to_vec();
    all.push(program.display().to_string());
    all.extend(args);
    (PathBuf::from("setpriv"), all)
}

/// A new PostgreSQL cluster in `data` (outside `/root`, which the
/// `postgres` user cannot enter), trusting local connections, and the
/// process that serves it on `127.0.0.1:port` (not started).
pub(crate) async fn postgres_proc(data: &Path, log: PathBuf, port: u16) -> anyhow::Result<Proc> {
    let bin = pg_bin_dir()?;
    let root = as_postgres_user().await?;
    if data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("removing {}", data.display()))?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    if root {
        let out = Command::new("chown")
            .args(["postgres:postgres", &data.display().to_string()])
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "chown postgres {}: {}",
                data.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let (program, args) = command_for(
        root,
        bin.join("initdb"),
        [
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    let out = Command::new(&program)
        .args(&args)
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "initdb {} failed: {}{}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (program, args) = command_for(
        root,
        bin.join("postgres"),
        [
            "-D",
            &data.display().to_string(),
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    Ok(Proc {
        name: "postgres".into(),
        program,
        args,
        env: Vec::new(),
        log,
        cwd: Some(std::env::temp_dir()),
        child: None,
    })
}

/// The SMTP listener `which` on `127.0.0.1:port`, storing in the Maildir
/// `maildir` (not started); none for [`Smtp::External`].
pub(crate) fn smtp_proc(
    which: Smtp,
    bin_dir: &Path,
    maildir: &Path,
    log: PathBuf,
    port: u16,
) -> Option<Proc> {
    let listen = format!("127.0.0.1:{port}");
    let maildir = maildir.display().to_string();
    let (program, args) = match which {
        Smtp::Aiosmtpd => (
            env::python(),
            vec![
                "-m".into(),
                "aiosmtpd".into(),
                "-n".into(),
                "-l".into(),
                listen,
                "-c".into(),
                "aiosmtpd.handlers.Mailbox".into(),
                maildir,
            ],
        ),
        Smtp::Orderctl => (
            bin_dir.join("orderctl"),
            vec![
                "smtp-sink".into(),
                "--listen".into(),
                listen,
                "--maildir".into(),
                maildir,
            ],
        ),
        Smtp::External => return None,
    };
    Some(Proc {
        name: "smtp".into(),
        program,
        args,
        env: Vec::new(),
        log,
        cwd: None,
        child: None,
    })
}

/// The workspace's schema registry on `127.0.0.1:port`, storing in
/// `database_url` (not started).
pub(crate) fn registry_proc(bin_dir: &Path, database_url: &str, log: PathBuf, port: u16) -> Proc {
    Proc {
        name: "registry".into(),
        program: bin_dir.join("schema-registry"),
        args: Vec::new(),
        env: vec![
            (
                "SCHEMA_REGISTRY_DATABASE_URL".into(),
                database_url.to_owned(),
            ),
            (
                "SCHEMA_REGISTRY_LISTEN_ADDR".into(),
                format!("127.0.0.1:{port}"),
            ),
            ("RUST_LOG".into(), "info".into()),
        ],
        log,
        cwd: None,
        child: None,
    }
}

//! The five service processes of a stack: stopping, starting again and
//! waiting until they are ready.

use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use tokio::process::Child;

use super::{roles, Service, Stack, StackOptions};
use crate::env;
use crate::process::{listens, spawn_proc, tail, Stop};

impl Stack {
    /// Process id of a running service.
    pub async fn pid(&self, svc: Service) -> Option<u32> {
        let p = self.procs[&svc].lock().await;
        p.child.as_ref().and_then(Child::id)
    }

    /// SIGKILLs a service and waits until it is gone; returns its exit
    /// status.
    pub async fn kill(&self, svc: Service) -> ExitStatus {
        let mut p = self.procs[&svc].lock().await;
        p.stop(Stop::Kill, &self.pid_dir, &self.id).await
    }

    /// SIGTERMs a service (`kill -TERM <pid>`) and waits up to 30 s for it
    /// to exit; returns its exit status. Panics if it does not stop.
    pub async fn terminate(&self, svc: Service) -> ExitStatus {
        let mut p = self.procs[&svc].lock().await;
        p.stop(Stop::Term, &self.pid_dir, &self.id).await
    }

    /// The stack's Kafka bootstrap servers (its own broker's, or the
    /// shared one).
    pub fn kafka_bootstrap_servers(&self) -> &str {
        &self.kafka
    }

    /// Sets, or with `None` removes, an environment variable of a service;
    /// it takes effect at its next start ([`Stack::start_service`]).
    pub async fn set_service_env(&self, svc: Service, key: &str, value: Option<&str>) {
        let mut p = self.procs[&svc].lock().await;
        p.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            p.env.push((key.to_owned(), v.to_owned()));
        }
    }

    /// Starts a stopped service again (same port, same environment, log
    /// appended) and waits until it is ready. (`start` is the constructor.)
    pub async fn start_service(&self, svc: Service) {
        {
            let mut p = self.procs[&svc].lock().await;
            assert!(p.child.is_none(), "start_service({svc}): already running");
            spawn_proc(&mut p, &self.pid_dir).unwrap_or_else(|e| panic!("restarting {svc}: {e:#}"));
        }
        self.wait_ready(svc)
            .await
            .unwrap_or_else(|e| panic!("restarting {svc}: {e:#}"));
        eprintln!("stack {}: {svc} restarted", self.id);
    }

    /// Whether a service process is running.
    pub async fn is_running(&self, svc: Service) -> bool {
        let mut p = self.procs[&svc].lock().await;
        match p.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until a service or the SMTP listener exits on its own and
    /// says which and how; for a supervisor that runs until something
    /// dies (`orderctl stack`). Polls every 250 ms.
    pub async fn supervise(&self) -> (String, ExitStatus) {
        loop {
            for svc in Service::ALL {
                let mut p = self.procs[&svc].lock().await;
                if let Some(Ok(Some(status))) = p.child.as_mut().map(Child::try_wait) {
                    return (svc.binary(), status);
                }
            }
            if let Some(smtp) = &self.smtp {
                let mut p = smtp.lock().await;
                if let Some(Ok(Some(status))) = p.child.as_mut().map(Child::try_wait) {
                    return ("the SMTP listener".to_owned(), status);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops every service still running, all at once, and then the SMTP
    /// listener (SIGTERM each, waiting until it has exited): a clean stop,
    /// with every consumer leaving its group, before the broker goes.
    pub async fn stop_all(&self) {
        let services = Service::ALL.map(|svc| async move {
            let mut p = self.procs[&svc].lock().await;
            if !p.reap(&self.pid_dir) && p.child.is_some() {
                p.stop(Stop::Term, &self.pid_dir, &self.id).await;
            }
        });
        futures::future::join_all(services).await;
        if let Some(smtp) = &self.smtp {
            let mut p = smtp.lock().await;
            if !p.reap(&self.pid_dir) && p.child.is_some() {
                p.stop(Stop::Term, &self.pid_dir, &self.id).await;
            }
        }
    }

    /// The port `svc` listens on.
    pub fn port(&self, svc: Service) -> u16 {
        self.ports[&svc].load(Ordering::Relaxed)
    }

    /// [`Stack::wait_ready`] for a first start: a service whose picked
    /// port another process took meanwhile (it exits, unable to bind) is
    /// started again on another free port, up to twice.
    pub(super) async fn ready_or_moved(&self, svc: Service) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            let Err(e) = self.wait_ready(svc).await else {
                return Ok(());
            };
            let mut p = self.procs[&svc].lock().await;
            let port = self.port(svc);
            let lost_port = !self.fixed_ports.contains(&svc)
                && p.exited()
                && tail(&p.log, 40).contains(&format!("binding 127.0.0.1:{port}"));
            if !lost_port || attempt == 3 {
                return Err(e);
            }
            let new = crate::free_ports(1)?[0];
            eprintln!(
                "stack {}: port {port} of {svc} was taken by another process; moving it to {new}",
                self.id
            );
            self.ports[&svc].store(new, Ordering::Relaxed);
            p.env.retain(|(k, _)| k != "HTTP_PORT");
            p.env.push(("HTTP_PORT".into(), new.to_string()));
            p.reap(&self.pid_dir);
            spawn_proc(&mut p, &self.pid_dir)?;
            attempt += 1;
        }
    }

    /// Polls `/health/ready` until 200 from the service's own process;
    /// fails early if the process exits.
    pub(super) async fn wait_ready(&self, svc: Service) -> anyhow::Result<()> {
        let url = format!("{}/health/ready", self.url(svc));
        let deadline = Instant::now() + self.ready_timeout;
        let mut last;
        loop {
            let pid = {
                let mut p = self.procs[&svc].lock().await;
                let log = p.log.clone();
                if let Some(child) = p.child.as_mut() {
                    if let Some(status) = child.try_wait()? {
                        bail!(
                            "{svc}-service exited ({status}) before it was ready; last lines of {}:\n{}",
                            log.display(),
                            tail(&log, 40)
                        );
                    }
                } else {
                    bail!("{svc}-service is not running");
                }
                p.child.as_ref().and_then(Child::id)
            };
            match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                // The port was picked free a while ago; only the
                // service's own answer counts (with a stranger's, the
                // service fails to bind and exits, seen above).
                Ok(r) if r.status().is_success() => {
                    if pid.and_then(|pid| listens(pid, self.port(svc))) != Some(false) {
                        return Ok(());
                    }
                    last = format!("port {} is another process's", self.port(svc));
                }
                Ok(r) => {
                    last = format!("{} {}", r.status(), r.text().await.unwrap_or_default());
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                let log = self.log_dir.join(format!("{}.log", svc.name()));
                bail!(
                    "{svc}-service was not ready within {:?} (GET {url}: {last}); last lines of {}:\n{}",
                    self.ready_timeout,
                    log.display(),
                    tail(&log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The environment of `svc`'s process: the topics' (`topic_env`), its
/// database as its roles, its port, the options' settings.
pub(super) fn env_of(
    svc: Service,
    options: &StackOptions,
    topic_env: &[(String, String)],
    database_url: &str,
    port: u16,
    smtp_port: u16,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = topic_env.to_vec();
    vars.extend([
        (
            "DATABASE_URL".into(),
            roles::as_role(database_url, &roles::app(svc))?,
        ),
        (
            "MIGRATION_DATABASE_URL".into(),
            roles::as_role(database_url, &roles::owner(svc))?,
        ),
        ("HTTP_HOST".into(), options.http_host.clone()),
        (
            "AUTH_PUBLIC_KEY_FILE".into(),
            options
                .auth_public_key_file
                .clone()
                .unwrap_or_else(|| env::dev_key("jwt-dev.pub.pem"))
                .display()
                .to_string(),
        ),
        ("HTTP_PORT".into(), port.to_string()),
        ("RUST_LOG".into(), options.rust_log.clone()),
    ]);
    if let Some(n) = options.database_max_connections {
        vars.push(("DATABASE_MAX_CONNECTIONS".into(), n.to_string()));
    }
    if let Some(n) = options.database_api_connections {
        vars.push(("DATABASE_API_CONNECTIONS".into(), n.to_string()));
    }
    if options.text_logs {
        vars.push(("LOG_FORMAT".into(), "text".into()));
        vars.push(("NO_COLOR".into(), "1".into()));
    }
    // The services read the shared registry as its read-only user,
    // as under scripts/up (orderctl above registered as admin).
    if let Some(url) = env::services_registry_url().filter(|_| !options.own_registry) {
        vars.push(("SCHEMA_REGISTRY_URL".into(), url));
    }
    if let Some(ms) = options.kafka_session_timeout_ms {
        vars.push(("KAFKA_PROP_SESSION_TIMEOUT_MS".into(), ms.to_string()));
        vars.push((
            "KAFKA_PROP_HEARTBEAT_INTERVAL_MS".into(),
            (ms / 6).max(100).to_string(),
        ));
    }
    match svc {
        Service::Order => {
            if let Some(t) = &options.saga_timeout {
                vars.push(("ORDER_SAGA_TIMEOUT".into(), t.clone()));
            }
            if let Some(t) = &options.deadline_check_interval {
                vars.push(("ORDER_DEADLINE_CHECK_INTERVAL".into(), t.clone()));
            }
        }
        Service::Notification => vars.extend([
            ("SMTP_HOST".into(), "127.0.0.1".into()),
            ("SMTP_PORT".into(), smtp_port.to_string()),
        ]),
        Service::Payment => {
            if let Some(max) = options.payment_max_amount {
                vars.push(("PAYMENT_MAX_AMOUNT".into(), max.to_string()));
            }
        }
        _ => {}
    }
    for (s, k, v) in &options.env {
        if *s == svc {
            vars.push((k.clone(), v.clone()));
        }
    }
    Ok(vars)
}

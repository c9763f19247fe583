//! The five service processes of a stack: stopping, starting again and
//! waiting until they are ready.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::bail;

use tokio::process::Child;

use super::{Service, Stack};
use crate::process::{spawn_proc, tail, Stop};

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
        eprintln!("e2e stack {}: {svc} restarted", self.id);
    }

    /// Whether a service process is running.
    pub async fn is_running(&self, svc: Service) -> bool {
        let mut p = self.procs[&svc].lock().await;
        match p.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls `/health/ready` until 200; fails early if the process exits.
    pub(super) async fn wait_ready(&self, svc: Service) -> anyhow::Result<()> {
        let url = format!("{}/health/ready", self.url(svc));
        let deadline = Instant::now() + self.ready_timeout;
        let mut last;
        loop {
            {
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
            }
            match self
                .http
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
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

//! One isolated orderflow stack: databases, topics, SMTP listener and the
//! five services as child processes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

mod access;
mod db;
mod helpers;
mod options;
mod own;
pub mod roles;
mod services;

pub use db::redact;
use db::{connect_admin, create_database, database_url, ensure_database};
pub use helpers::Helper;
pub use options::{Service, Smtp, StackOptions};

use crate::env;
use crate::free_ports;
pub use crate::process::tail;
use crate::process::{broker_proc, run_logged, spawn_proc, wait_for_tcp, Proc, WATCHDOG_SCRIPT};

/// A fully isolated orderflow stack. Dropping it stops every process it
/// started (SIGTERM, SIGKILL after 10 s, done by a watchdog that also acts
/// if the owning process dies); its databases are left behind
/// (`scripts/test` drops `e2e_%` databases before a run) for post-mortem
/// inspection.
pub struct Stack {
    /// Its id (`e2e_<8 hex>` unless [`StackOptions::id`] names one):
    /// database name prefix and log directory.
    pub id: String,
    /// Topic prefix (`<id>.` unless [`StackOptions::topic_prefix`] says
    /// otherwise).
    pub prefix: String,
    /// A client without credentials, for the health endpoints.
    http: reqwest::Client,
    log_dir: PathBuf,
    maildir: PathBuf,
    pid_dir: PathBuf,
    smtp_port: u16,
    /// Each service's port (moved when a picked port was taken meanwhile).
    ports: BTreeMap<Service, AtomicU16>,
    /// Whether a service's port was fixed by the caller.
    fixed_ports: BTreeSet<Service>,
    database_urls: BTreeMap<Service, String>,
    procs: BTreeMap<Service, Mutex<Proc>>,
    broker: Option<Mutex<Proc>>,
    postgres: Option<Mutex<Proc>>,
    registry: Option<Mutex<Proc>>,
    admin_url: String,
    registry_url: String,
    kafka: String,
    /// The SMTP listener it started (none with [`Smtp::External`]).
    smtp: Option<Mutex<Proc>>,
    watchdog: Option<Child>,
    watchdog_stdin: Option<ChildStdin>,
    pools: Mutex<HashMap<Service, PgPool>>,
    ready_timeout: Duration,
}

impl Stack {
    /// Starts a stack and waits until every service is ready; fails with
    /// a clear message when something is missing or does not come up
    /// (processes started so far are stopped).
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let started = Instant::now();
        let id = options
            .id
            .clone()
            .unwrap_or_else(|| format!("e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let prefix = options
            .topic_prefix
            .clone()
            .unwrap_or_else(|| format!("{id}."));
        let log_dir = options
            .log_dir
            .clone()
            .unwrap_or_else(|| env::target_dir().join("e2e-logs").join(&id));
        let maildir = options
            .maildir
            .clone()
            .unwrap_or_else(|| log_dir.join("maildir"));
        let pid_dir = log_dir.join("pids");
        for d in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(d))
                .with_context(|| format!("creating {}", maildir.display()))?;
        }
        std::fs::create_dir_all(&pid_dir)?;
        eprintln!(
            "stack {id}: logs in {} (topic prefix {prefix:?}, databases {})",
            log_dir.display(),
            options.kept_databases.as_deref().map_or_else(
                || format!("{id}_<service>"),
                |p| p.replace("{service}", "<service>")
            )
        );

        // Everything we run must exist before anything starts.
        let bin_dir = env::bin_dir();
        let mut missing = Vec::new();
        let mut programs = Vec::new();
        for name in Service::ALL
            .iter()
            .map(|s| s.binary())
            .chain(["orderctl".to_owned()])
        {
            let p = bin_dir.join(&name);
            if !p.is_file() {
                missing.push(p.display().to_string());
            }
            programs.push(p);
        }
        if !missing.is_empty() {
            bail!(
                "missing binaries: {}. Build them first (`cargo build --bins`, which scripts/test does) \
                 or point ORDERFLOW_BIN_DIR at the directory holding them",
                missing.join(", ")
            );
        }

        // A watchdog that stops every recorded child when this process
        // closes the pipe: on Drop, and also when the test process dies
        // without running Drop (e.g. the harness is killed), since only this
        // process holds the pipe. It sends SIGTERM first, so consumers leave
        // their Kafka groups cleanly, and SIGKILL after 10 s.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("stack-watchdog")
            .arg(&pid_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the watchdog shell")?;
        let watchdog_stdin = watchdog.stdin.take();
        let mut free = free_ports(4 + Service::ALL.len())?.into_iter();

        // PostgreSQL and the registry of the stack's own, if it has them.
        let (admin, postgres) = if options.own_postgres {
            let port = free.next().context("no port for PostgreSQL")?;
            let data = std::env::temp_dir().join(format!("orderflow-{id}-pg"));
            let mut pg = own::postgres_proc(&data, log_dir.join("postgres.log"), port).await?;
            spawn_proc(&mut pg, &pid_dir)?;
            wait_for_tcp(&mut pg, port, Duration::from_secs(60)).await?;
            let admin = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            (admin, Some(Mutex::new(pg)))
        } else {
            (env::admin_database_url(), None)
        };
        let mut conn = connect_admin(&admin).await?;
        let (registry, registry_proc) = if options.own_registry {
            let port = free.next().context("no port for the registry")?;
            let db = format!("{id}_registry");
            create_database(&mut conn, &db).await?;
            let mut reg = own::registry_proc(
                &bin_dir,
                &database_url(&admin, &db)?,
                log_dir.join("registry.log"),
                port,
            );
            spawn_proc(&mut reg, &pid_dir)?;
            wait_for_tcp(&mut reg, port, Duration::from_secs(60)).await?;
            (format!("http://127.0.0.1:{port}"), Some(Mutex::new(reg)))
        } else {
            (env::registry_url(), None)
        };

        // Databases.
        let mut database_urls = BTreeMap::new();
        for svc in Service::ALL {
            let db = match &options.kept_databases {
                Some(pattern) => {
                    let db = pattern.replace("{service}", svc.name());
                    ensure_database(&mut conn, &db).await?;
                    db
                }
                None => {
                    let db = format!("{id}_{}", svc.name());
                    create_database(&mut conn, &db).await?;
                    db
                }
            };
            let url = database_url(&admin, &db)?;
            roles::grant(&url, &db, svc).await?;
            database_urls.insert(svc, url);
        }
        conn.close().await.ok();

        // The broker of the stack's own, if it has one.
        let mut broker_port = free.next().context("no port for the broker")?;
        let (kafka, broker) = if options.own_broker {
            // The port was free when picked, seconds ago; if another
            // process took it meanwhile the broker exits, and gets another.
            let mut attempt = 1;
            let broker = loop {
                let mut broker = broker_proc(&log_dir, broker_port)?;
                spawn_proc(&mut broker, &pid_dir)?;
                match wait_for_tcp(&mut broker, broker_port, Duration::from_secs(60)).await {
                    Ok(()) => break broker,
                    Err(e) if attempt < 3 && broker.exited() => {
                        eprintln!("stack {id}: the broker did not start on port {broker_port} ({e:#}); trying another");
                        broker_port = free_ports(1)?[0];
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            (format!("127.0.0.1:{broker_port}"), Some(Mutex::new(broker)))
        } else {
            (env::kafka_bootstrap_servers(), None)
        };

        // Topics and schemas, with the real operator tool.
        let mut topic_env: Vec<(String, String)> = vec![
            ("ORDERFLOW_TOPIC_PREFIX".into(), prefix.clone()),
            ("KAFKA_BOOTSTRAP_SERVERS".into(), kafka.clone()),
            ("SCHEMA_REGISTRY_URL".into(), registry.clone()),
        ];
        if let Some(n) = options.partitions {
            for (stream, topic) in [
                ("ORDER", "order-events"),
                ("INVENTORY", "inventory-events"),
                ("PAYMENT", "payment-events"),
                ("SHIPPING", "shipping-events"),
                ("NOTIFICATION", "notification-events"),
                ("AUDIT", "audit-events"),
            ] {
                topic_env.push((format!("ORDERFLOW_TOPIC_{stream}"), format!("{topic}:{n}")));
            }
        }
        let orderctl = bin_dir.join("orderctl");
        for args in [["topics", "create"], ["schemas", "register"]] {
            run_logged(&orderctl, &args, &topic_env, &log_dir.join("orderctl.log"))
                .await
                .with_context(|| {
                    format!(
                        "orderctl {} (KAFKA_BOOTSTRAP_SERVERS={kafka}, SCHEMA_REGISTRY_URL={}; \
                         is the infrastructure running? scripts/test starts it)",
                        args.join(" "),
                        redact(&registry)
                    )
                })?;
        }

        // The SMTP listener, then the services, each on a port of its own.
        let smtp_port = match (options.smtp_port, options.smtp) {
            (Some(p), _) => p,
            (None, Smtp::External) => {
                bail!("an external SMTP listener needs its port (StackOptions::smtp_port)")
            }
            (None, _) => free.next().context("no port for the SMTP listener")?,
        };
        let smtp = match own::smtp_proc(
            options.smtp,
            &bin_dir,
            &maildir,
            log_dir.join("smtp.log"),
            smtp_port,
        ) {
            Some(mut smtp) => {
                spawn_proc(&mut smtp, &pid_dir)?;
                wait_for_tcp(&mut smtp, smtp_port, Duration::from_secs(30)).await?;
                Some(Mutex::new(smtp))
            }
            None => None,
        };

        // The services.
        let mut ports = BTreeMap::new();
        let mut procs = BTreeMap::new();
        for svc in Service::ALL {
            let port = match options.ports.get(&svc) {
                Some(p) => *p,
                None => free.next().context("no port for a service")?,
            };
            ports.insert(svc, AtomicU16::new(port));
            let vars = services::env_of(
                svc,
                &options,
                &topic_env,
                &database_urls[&svc],
                port,
                smtp_port,
            )?;
            let mut proc = Proc {
                name: svc.name().into(),
                program: bin_dir.join(svc.binary()),
                args: Vec::new(),
                env: vars,
                log: log_dir.join(format!("{}.log", svc.name())),
                cwd: None,
                child: None,
            };
            spawn_proc(&mut proc, &pid_dir)?;
            procs.insert(svc, Mutex::new(proc));
        }

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client")?;
        let stack = Stack {
            id,
            prefix,
            http,
            log_dir,
            maildir,
            pid_dir,
            smtp_port,
            ports,
            fixed_ports: options.ports.keys().copied().collect(),
            database_urls,
            procs,
            broker,
            postgres,
            registry: registry_proc,
            admin_url: admin,
            registry_url: registry,
            kafka,
            smtp,
            watchdog: Some(watchdog),
            watchdog_stdin,
            pools: Mutex::new(HashMap::new()),
            ready_timeout: options.ready_timeout,
        };
        let waits = Service::ALL.map(|svc| stack.ready_or_moved(svc));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        eprintln!(
            "stack {}: ready in {:.1}s ({})",
            stack.id,
            started.elapsed().as_secs_f64(),
            Service::ALL
                .iter()
                .map(|s| format!("{s}={}", stack.url(*s)))
                .collect::<Vec<_>>()
                .join(" ")
        );
        Ok(stack)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Closing the pipe makes the watchdog SIGTERM every child still
        // recorded (SIGKILL after 10 s); it outlives this process if needed.
        // A graceful stop matters: a SIGKILLed consumer stays a member of its
        // Kafka group until its session times out.
        self.watchdog_stdin.take();
        self.watchdog.take();
        for proc in self.procs.values_mut() {
            proc.get_mut().child.take();
        }
        if let Some(smtp) = self.smtp.as_mut() {
            smtp.get_mut().child.take();
        }
    }
}

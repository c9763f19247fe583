//! One isolated orderflow stack: databases, topics, SMTP listener and the
//! five services as child processes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

mod access;
mod helpers;
mod options;
mod own;
pub mod roles;
mod services;

pub use helpers::Helper;
pub use options::{Service, StackOptions};

use crate::env;
pub use crate::process::tail;
use crate::process::{
    broker_proc, free_ports, run_logged, spawn_proc, wait_for_tcp, Proc, WATCHDOG_SCRIPT,
};

/// A fully isolated orderflow stack for one test. Dropping it stops every
/// process it started (SIGTERM, SIGKILL after 10 s, done by a watchdog that
/// also acts if the test process dies); its databases are left behind
/// (`scripts/test` drops `e2e_%` databases before a run) for post-mortem
/// inspection.
pub struct Stack {
    /// Unique id (`e2e_<8 hex>`): database name prefix and log directory.
    pub id: String,
    /// Topic prefix (`<id>.`).
    pub prefix: String,
    /// Default deadline of saga waits.
    pub timeout: Duration,
    pub(crate) http: reqwest::Client,
    log_dir: PathBuf,
    maildir: PathBuf,
    pid_dir: PathBuf,
    smtp_port: u16,
    ports: BTreeMap<Service, u16>,
    database_urls: BTreeMap<Service, String>,
    procs: BTreeMap<Service, Mutex<Proc>>,
    broker: Option<Mutex<Proc>>,
    postgres: Option<Mutex<Proc>>,
    registry: Option<Mutex<Proc>>,
    admin_url: String,
    registry_url: String,
    kafka: String,
    smtp: Mutex<Proc>,
    watchdog: Option<Child>,
    watchdog_stdin: Option<ChildStdin>,
    pools: Mutex<HashMap<Service, PgPool>>,
    /// Payment methods registered by the harness, by `(customer, token)`.
    pub(crate) payment_methods: Mutex<HashMap<(String, String), String>>,
    ready_timeout: Duration,
}

/// `url` with its database (path) replaced by `db`.
fn database_url(admin: &str, db: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin)
        .with_context(|| format!("ORDERFLOW_TEST_DATABASE_URL={admin} is not a URL"))?;
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

impl Stack {
    /// Starts a stack; panics with a clear message when something is
    /// missing or does not come up (processes started so far are killed).
    pub async fn start(options: StackOptions) -> Stack {
        match Self::try_start(options).await {
            Ok(stack) => stack,
            Err(e) => panic!("could not start the e2e stack: {e:#}"),
        }
    }

    /// Starts a stack with the default options.
    pub async fn start_default() -> Stack {
        Self::start(StackOptions::default()).await
    }

    async fn try_start(options: StackOptions) -> anyhow::Result<Stack> {
        let started = Instant::now();
        let id = format!("e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let prefix = format!("{id}.");
        let log_dir = env::target_dir().join("e2e-logs").join(&id);
        let maildir = log_dir.join("maildir");
        let pid_dir = log_dir.join("pids");
        for d in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(d))
                .with_context(|| format!("creating {}", maildir.display()))?;
        }
        std::fs::create_dir_all(&pid_dir)?;
        eprintln!(
            "e2e stack {id}: logs in {} (topic prefix {prefix}, databases {id}_<service>)",
            log_dir.display()
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
        let python = env::python();

        // A watchdog that stops every recorded child when this process
        // closes the pipe: on Drop, and also when the test process dies
        // without running Drop (e.g. the harness is killed), since only this
        // process holds the pipe. It sends SIGTERM first, so consumers leave
        // their Kafka groups cleanly, and SIGKILL after 10 s.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("e2e-watchdog")
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
            sqlx::query(&format!("CREATE DATABASE \"{db}\""))
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating database {db}"))?;
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
            let db = format!("{id}_{}", svc.name());
            sqlx::query(&format!("CREATE DATABASE \"{db}\""))
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating database {db}"))?;
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
                        eprintln!("e2e stack {id}: the broker did not start on port {broker_port} ({e:#}); trying another");
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
                        "orderctl {} (KAFKA_BOOTSTRAP_SERVERS={kafka}, SCHEMA_REGISTRY_URL={registry}; \
                         is the test infrastructure running? scripts/test starts it)",
                        args.join(" ")
                    )
                })?;
        }

        // The SMTP listener, then the services, each on a port of its own.
        let smtp_port = free.next().context("no port for the SMTP listener")?;
        let mut smtp = Proc {
            name: "smtp".into(),
            program: python,
            args: vec![
                "-m".into(),
                "aiosmtpd".into(),
                "-n".into(),
                "-l".into(),
                format!("127.0.0.1:{smtp_port}"),
                "-c".into(),
                "aiosmtpd.handlers.Mailbox".into(),
                maildir.display().to_string(),
            ],
            env: Vec::new(),
            log: log_dir.join("smtp.log"),
            cwd: None,
            child: None,
        };
        spawn_proc(&mut smtp, &pid_dir)?;
        wait_for_tcp(&mut smtp, smtp_port, Duration::from_secs(30)).await?;

        // The services.
        let mut ports = BTreeMap::new();
        let mut procs = BTreeMap::new();
        for svc in Service::ALL {
            let port = free.next().context("no port for a service")?;
            ports.insert(svc, port);
            let mut vars: Vec<(String, String)> = topic_env.clone();
            vars.extend([
                (
                    "DATABASE_URL".into(),
                    roles::as_role(&database_urls[&svc], &roles::app(svc))?,
                ),
                (
                    "MIGRATION_DATABASE_URL".into(),
                    roles::as_role(&database_urls[&svc], &roles::owner(svc))?,
                ),
                (
                    "DATABASE_MAX_CONNECTIONS".into(),
                    options.database_max_connections.to_string(),
                ),
                (
                    "DATABASE_API_CONNECTIONS".into(),
                    options.database_api_connections.to_string(),
                ),
                ("HTTP_HOST".into(), "127.0.0.1".into()),
                (
                    "AUTH_PUBLIC_KEY_FILE".into(),
                    env::dev_key("jwt-dev.pub.pem").display().to_string(),
                ),
                ("HTTP_PORT".into(), port.to_string()),
                ("RUST_LOG".into(), options.rust_log.clone()),
                ("LOG_FORMAT".into(), "text".into()),
                ("NO_COLOR".into(), "1".into()),
            ]);
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
                Service::Order => vars.extend([
                    ("ORDER_SAGA_TIMEOUT".into(), options.saga_timeout.clone()),
                    (
                        "ORDER_DEADLINE_CHECK_INTERVAL".into(),
                        options.deadline_check_interval.clone(),
                    ),
                ]),
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

        // Every request of the harness carries a token of the development
        // key with the operator and service roles (tests/auth.rs sends
        // others with a client of its own).
        let mut headers = reqwest::header::HeaderMap::new();
        let token = env::harness_token().context("minting the harness token")?;
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().context("token header")?,
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        let stack = Stack {
            id,
            prefix,
            timeout: env::saga_timeout(),
            http,
            log_dir,
            maildir,
            pid_dir,
            smtp_port,
            ports,
            database_urls,
            procs,
            broker,
            postgres,
            registry: registry_proc,
            admin_url: admin,
            registry_url: registry,
            kafka,
            smtp: Mutex::new(smtp),
            watchdog: Some(watchdog),
            watchdog_stdin,
            pools: Mutex::new(HashMap::new()),
            payment_methods: Mutex::new(HashMap::new()),
            ready_timeout: options.ready_timeout,
        };
        let waits = Service::ALL.map(|svc| stack.wait_ready(svc));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        eprintln!(
            "e2e stack {}: ready in {:.1}s ({})",
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
        self.smtp.get_mut().child.take();
    }
}

/// Connects to the admin database. A server of the stack's own accepts
/// connections a moment before it lets them in (`57P03`, "the database
/// system is starting up"): those are retried for up to a minute.
async fn connect_admin(admin: &str) -> anyhow::Result<PgConnection> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match PgConnection::connect(admin).await {
            Ok(conn) => return Ok(conn),
            Err(e)
                if Instant::now() < deadline
                    && e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|c| c == "57P03") =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("connecting to the admin database {admin}")))
            }
        }
    }
}

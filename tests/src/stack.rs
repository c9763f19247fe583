//! One isolated orderflow stack: databases, topics, SMTP listener and the
//! five services as child processes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

use crate::env;

/// One of the five services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `order-service`.
    Order,
    /// `inventory-service`.
    Inventory,
    /// `payment-service`.
    Payment,
    /// `shipping-service`.
    Shipping,
    /// `notification-service`.
    Notification,
}

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 5] = [
        Service::Order,
        Service::Inventory,
        Service::Payment,
        Service::Shipping,
        Service::Notification,
    ];

    /// Short name (`order`), used in database and log file names.
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Shipping => "shipping",
            Service::Notification => "notification",
        }
    }

    /// Binary name (`order-service`).
    pub fn binary(self) -> String {
        format!("{}-service", self.name())
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `ORDER_SAGA_TIMEOUT` of the order service. Long by default so the
    /// deadline sweeper never interferes with a test that does not test it.
    pub saga_timeout: String,
    /// `ORDER_DEADLINE_CHECK_INTERVAL` of the order service.
    pub deadline_check_interval: String,
    /// `PAYMENT_MAX_AMOUNT` of the payment service (service default if unset).
    pub payment_max_amount: Option<i64>,
    /// Partition count of every topic (the real table if unset; the
    /// environment variable `ORDERFLOW_E2E_PARTITIONS` sets the default).
    pub partitions: Option<i32>,
    /// `DATABASE_MAX_CONNECTIONS` of every service (default 4: two stacks
    /// of five services, the registry and whatever else shares the server
    /// must fit into PostgreSQL's default 100 connections; a service that
    /// meets "too many clients" while migrating exits).
    pub database_max_connections: u32,
    /// `DATABASE_API_CONNECTIONS` of every service (default 1, for the same
    /// reason).
    pub database_api_connections: u32,
    /// `RUST_LOG` of every service.
    pub rust_log: String,
    /// Extra environment variables per service.
    pub env: Vec<(Service, String, String)>,
    /// How long a service may take to become ready.
    pub ready_timeout: Duration,
    /// `session.timeout.ms` of the services' Kafka consumers
    /// (`KAFKA_PROP_SESSION_TIMEOUT_MS`). Short, so that a SIGKILLed
    /// consumer leaves its group quickly: a dead member stalls the next
    /// rebalance of its group until its session expires. (Each stack has
    /// groups of its own: the services prefix their group ids with the
    /// topic prefix.)
    pub kafka_session_timeout_ms: Option<u32>,
    /// Run a broker of the stack's own (`BROKER_BIN`, on its durable
    /// `sqlite://` engine in the stack's log directory, as `scripts/up`
    /// runs it) instead of the shared one, so a test can stop and restart
    /// it ([`Stack::stop_broker`], [`Stack::start_broker`]).
    pub own_broker: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            saga_timeout: "600s".into(),
            deadline_check_interval: "1s".into(),
            payment_max_amount: None,
            partitions: env::partitions_override(),
            database_max_connections: 4,
            database_api_connections: 1,
            rust_log: std::env::var("ORDERFLOW_E2E_RUST_LOG").unwrap_or_else(|_| "info".into()),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(90),
            kafka_session_timeout_ms: Some(6000),
            own_broker: false,
        }
    }
}

/// A child process of the stack.
struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Working directory (the workspace root if unset).
    cwd: Option<PathBuf>,
    child: Option<Child>,
}

/// How to stop a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, and wait (30 s at most) for it to exit: a clean stop.
    Term,
    /// SIGKILL: a crash.
    Kill,
}

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
    kafka: String,
    smtp: Option<Child>,
    watchdog: Option<Child>,
    watchdog_stdin: Option<ChildStdin>,
    pools: Mutex<HashMap<Service, PgPool>>,
    ready_timeout: Duration,
}

/// `sh -c` script of the watchdog (`$1`: the pid directory).
const WATCHDOG_SCRIPT: &str = r#"
cat >/dev/null
pids=""
for f in "$1"/*.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
[ -n "$pids" ] || exit 0
kill -TERM $pids 2>/dev/null
i=0
while [ $i -lt 100 ]; do
  alive=""
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
  [ -z "$alive" ] && exit 0
  sleep 0.1
  i=$((i + 1))
done
kill -KILL $pids 2>/dev/null
exit 0
"#;

fn now_stamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// `n` distinct TCP ports nobody listens on right now. Every listener is
/// held until all are picked: a port released at once can be handed out
/// again by the next bind to port 0, and two processes of one stack would
/// then be given the same port.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// `url` with its database (path) replaced by `db`.
fn database_url(admin: &str, db: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin)
        .with_context(|| format!("ORDERFLOW_TEST_DATABASE_URL={admin} is not a URL"))?;
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
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

        let admin = env::admin_database_url();
        let registry = env::registry_url();

        // Databases.
        let mut conn = PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to the admin database {admin}"))?;
        let mut database_urls = BTreeMap::new();
        for svc in Service::ALL {
            let db = format!("{id}_{}", svc.name());
            sqlx::query(&format!("CREATE DATABASE \"{db}\""))
                .execute(&mut conn)
                .await
                .with_context(|| format!("creating database {db}"))?;
            database_urls.insert(svc, database_url(&admin, &db)?);
        }
        conn.close().await.ok();

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

        // The broker of the stack's own, if it has one.
        let mut free = free_ports(2 + Service::ALL.len())?.into_iter();
        let broker_port = free.next().context("no port for the broker")?;
        let (kafka, broker) = if options.own_broker {
            let mut broker = broker_proc(&log_dir, broker_port)?;
            spawn_proc(&mut broker, &pid_dir)?;
            wait_for_tcp(&mut broker, broker_port, Duration::from_secs(60)).await?;
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
                ("DATABASE_URL".into(), database_urls[&svc].clone()),
                (
                    "DATABASE_MAX_CONNECTIONS".into(),
                    options.database_max_connections.to_string(),
                ),
                (
                    "DATABASE_API_CONNECTIONS".into(),
                    options.database_api_connections.to_string(),
                ),
                ("HTTP_HOST".into(), "127.0.0.1".into()),
                ("HTTP_PORT".into(), port.to_string()),
                ("RUST_LOG".into(), options.rust_log.clone()),
                ("LOG_FORMAT".into(), "text".into()),
                ("NO_COLOR".into(), "1".into()),
            ]);
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

        let http = reqwest::Client::builder()
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
            kafka,
            smtp: smtp.child.take(),
            watchdog: Some(watchdog),
            watchdog_stdin,
            pools: Mutex::new(HashMap::new()),
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

    /// Base URL of a service (`http://127.0.0.1:<port>`).
    pub fn url(&self, svc: Service) -> String {
        format!("http://127.0.0.1:{}", self.ports[&svc])
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
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

    /// Database URL of a service.
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

    /// Process id of a running service.
    pub async fn pid(&self, svc: Service) -> Option<u32> {
        let p = self.procs[&svc].lock().await;
        p.child.as_ref().and_then(Child::id)
    }

    /// SIGKILLs a service and waits until it is gone; returns when that
    /// was.
    pub async fn kill(&self, svc: Service) -> Instant {
        let mut p = self.procs[&svc].lock().await;
        self.stop_proc(&mut p, Stop::Kill).await;
        Instant::now()
    }

    /// SIGTERMs a service (`kill -TERM <pid>`) and waits up to 30 s for it
    /// to exit; returns its exit status. Panics if it does not stop.
    pub async fn terminate(&self, svc: Service) -> ExitStatus {
        let mut p = self.procs[&svc].lock().await;
        self.stop_proc(&mut p, Stop::Term).await
    }

    /// Stops `p` with `how` and waits until it has exited; panics if it is
    /// not running or does not stop within 30 s of SIGTERM.
    async fn stop_proc(&self, p: &mut Proc, how: Stop) -> ExitStatus {
        let name = p.name.clone();
        let mut child = p
            .child
            .take()
            .unwrap_or_else(|| panic!("stopping {name}: it is not running"));
        let status = match how {
            Stop::Kill => {
                append_log(&p.log, &format!("===== {} e2e: SIGKILL", now_stamp()));
                child.start_kill().expect("sending SIGKILL");
                child.wait().await.expect("waiting for the killed process")
            }
            Stop::Term => {
                let pid = child.id().expect("running child has a pid");
                append_log(&p.log, &format!("===== {} e2e: SIGTERM", now_stamp()));
                let out = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .output()
                    .await
                    .expect("running kill -TERM");
                assert!(
                    out.status.success(),
                    "kill -TERM {pid} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                    Ok(s) => s.expect("waiting for the process"),
                    Err(_) => {
                        let _ = child.start_kill();
                        panic!(
                            "{name} did not exit within 30 s of SIGTERM; last log lines:\n{}",
                            tail(&p.log, 30)
                        );
                    }
                }
            }
        };
        let _ = std::fs::remove_file(self.pid_dir.join(format!("{name}.pid")));
        let verb = match how {
            Stop::Kill => "killed",
            Stop::Term => "terminated",
        };
        eprintln!("e2e stack {}: {name} {verb} ({status})", self.id);
        status
    }

    /// The stack's Kafka bootstrap servers (its own broker's, or the
    /// shared one).
    pub fn kafka_bootstrap_servers(&self) -> &str {
        &self.kafka
    }

    fn own_broker(&self) -> &Mutex<Proc> {
        self.broker
            .as_ref()
            .expect("the stack has no broker of its own (StackOptions::own_broker)")
    }

    /// Stops the stack's own broker with `how`.
    pub async fn stop_broker(&self, how: Stop) -> ExitStatus {
        let mut p = self.own_broker().lock().await;
        self.stop_proc(&mut p, how).await
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
        eprintln!("e2e stack {}: broker started", self.id);
    }

    /// Waits until the service's consumer holds partitions
    /// (`GET /health/consumers` answers 200): until then it consumes
    /// nothing. After a clean stop of every member this takes the broker's
    /// initial rebalance delay; after a crash, until the broker expires the
    /// dead member.
    pub async fn wait_assigned(&self, svc: Service, timeout: Duration) {
        let url = format!("{}/health/consumers", self.url(svc));
        let what = format!("{svc}'s consumer to hold partitions (GET {url})");
        crate::wait::eventually(&what, &self.diagnostics(), timeout, || async {
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
        .await;
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
    async fn wait_ready(&self, svc: Service) -> anyhow::Result<()> {
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
        self.smtp.take();
    }
}

/// The broker of a stack with one of its own: `BROKER_BIN` on
/// `127.0.0.1:port` with its durable SQLite engine in `<log_dir>/broker`,
/// started as `scripts/up` starts it.
fn broker_proc(log_dir: &Path, port: u16) -> anyhow::Result<Proc> {
    let program = env::broker_bin();
    if !program.is_file() {
        bail!(
            "the broker binary {} is missing: scripts/test builds it (or set BROKER_BIN)",
            program.display()
        );
    }
    let dir = log_dir.join("broker");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = format!("tcp://127.0.0.1:{port}");
    Ok(Proc {
        name: "broker".into(),
        program,
        args: [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://broker.db",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        log: log_dir.join("broker.log"),
        cwd: Some(dir),
        child: None,
    })
}

fn append_log(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "\n{line}");
    }
}

/// Spawns `p` with stdout/stderr appended to its log and records its pid.
fn spawn_proc(p: &mut Proc, pid_dir: &Path) -> anyhow::Result<()> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p.log)
        .with_context(|| format!("opening {}", p.log.display()))?;
    writeln!(
        log,
        "\n===== {} e2e: starting {} {}",
        now_stamp(),
        p.program.display(),
        p.args.join(" ")
    )?;
    let child = Command::new(&p.program)
        .args(&p.args)
        .envs(p.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // Only the broker reads it (and would validate records against a
        // registry of its own): never take it from the test's environment.
        .env_remove("SCHEMA_REGISTRY")
        .current_dir(p.cwd.clone().unwrap_or_else(env::workspace_root))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Not killed on drop: the watchdog stops the children gracefully.
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("spawning {}", p.program.display()))?;
    if let Some(pid) = child.id() {
        std::fs::write(pid_dir.join(format!("{}.pid", p.name)), pid.to_string())?;
    }
    p.child = Some(child);
    Ok(())
}

/// Waits until `port` accepts TCP connections; fails early if `p` exits.
async fn wait_for_tcp(p: &mut Proc, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(child) = p.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on port {port}; last lines of {}:\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 30)
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not listen on port {port} within {timeout:?}; last lines of {}:\n{}",
                p.name,
                p.log.display(),
                tail(&p.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a command to completion (60 s at most) with its output appended to
/// `log`; fails with the output when it fails.
async fn run_logged(
    program: &Path,
    args: &[&str],
    vars: &[(String, String)],
    log: &Path,
) -> anyhow::Result<()> {
    let fut = Command::new(program)
        .args(args)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(env::workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| anyhow::anyhow!("did not finish within 60 s"))?
        .with_context(|| format!("running {}", program.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    append_log(
        log,
        &format!(
            "===== {} e2e: {} {}\n{text}",
            now_stamp(),
            program.display(),
            args.join(" ")
        ),
    );
    if !out.status.success() {
        bail!("exited with {}:\n{text}", out.status);
    }
    Ok(())
}

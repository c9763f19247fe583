//! `orderctl stack` and `orderctl bench run`, the two commands that start
//! the services with the stack library outside the tests (`scripts/up`
//! and `scripts/bench` run them), run as a user runs them: as processes,
//! on the suite's broker and registry, loaded by `orderctl load`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use orderflow_e2e::{env, poll_until, Stack};
use tokio::process::{Child, Command};

/// A fresh id: databases `<id>_<service>`, topics `<id>.<topic>`.
fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn orderctl() -> PathBuf {
    env::bin_dir().join("orderctl")
}

/// `orderctl stack` for `id` in `dir`, its output in `dir/stack.log`.
fn spawn_stack(id: &str, dir: &Path, ports: &[(&str, u16)], smtp: u16, console: u16) -> Child {
    let log = std::fs::File::create(dir.join("stack.log")).expect("stack.log");
    let mut cmd = Command::new(orderctl());
    cmd.arg("stack")
        .arg("--data-dir")
        .arg(dir)
        .args(["--databases", &format!("{id}_{{service}}")])
        .args(["--smtp", "orderctl", "--smtp-port", &smtp.to_string()])
        .args(["--console", &console.to_string()]);
    for (name, port) in ports {
        cmd.args(["--port", &format!("{name}={port}")]);
    }
    cmd.env("ORDERFLOW_TOPIC_PREFIX", format!("{id}."))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        // A failed test leaves nothing running: orderctl's own watchdog
        // stops the services once orderctl is gone.
        .kill_on_drop(true)
        .spawn()
        .expect("spawning orderctl stack")
}

/// Waits until `port` accepts connections, failing early if `child` exits.
async fn wait_listening(child: &mut Child, port: u16, log: &Path) {
    let result = poll_until(Duration::from_secs(300), || {
        let exited = child.try_wait().ok().flatten();
        async move {
            if let Some(status) = exited {
                return Ok(Err(status));
            }
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| Ok(()))
                .map_err(|e| e.to_string())
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(status)) => panic!(
            "orderctl stack exited ({status}) before it was up:\n{}",
            orderflow_e2e::stack::tail(log, 60)
        ),
        Err(last) => panic!(
            "orderctl stack was not up within 300 s ({last}):\n{}",
            orderflow_e2e::stack::tail(log, 60)
        ),
    }
}

/// `orderctl load` against the services: whether every order was accepted
/// and ended as expected, and how many were accepted.
async fn load(ports: &[(&str, u16)], out: &Path) -> (bool, i64, String) {
    let url = |name: &str| {
        let port = ports.iter().find(|(n, _)| *n == name).expect("a port").1;
        format!("http://127.0.0.1:{port}")
    };
    let output = Command::new(orderctl())
        .current_dir(env::workspace_root())
        .arg("load")
        .args(["--order-url", &url("order")])
        .args(["--inventory-url", &url("inventory")])
        .args(["--payment-url", &url("payment")])
        .args(["--rate", "5", "--duration", "2s", "--skus", "3"])
        .args([
            "--settle-timeout",
            "120s",
            "--timeline-sample",
            "0",
            "--no-progress",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .await
        .expect("running orderctl load");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let accepted = std::fs::read(out)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["accepted"].as_i64())
        .unwrap_or(-1);
    (output.status.success(), accepted, text)
}

async fn wait_exit(child: &mut Child, within: Duration, log: &Path) -> ExitStatus {
    match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => status.expect("waiting for orderctl stack"),
        Err(_) => panic!(
            "orderctl stack did not exit within {within:?}:\n{}",
            orderflow_e2e::stack::tail(log, 60)
        ),
    }
}

async fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .await
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// What `scripts/up` relies on, and what a user does the next day: the
/// services come up and complete a load; SIGTERM stops every one of them
/// and exits 0; started again on the same databases they complete another
/// load, and the order database holds both runs' orders; a service that
/// dies makes `orderctl stack` say which and exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderctl_stack_restarts_on_its_data_and_reports_a_dead_service() {
    let id = new_id("e2e");
    let dir = env::target_dir().join("e2e-logs").join(&id);
    std::fs::create_dir_all(&dir).expect("data dir");
    let names = ["order", "inventory", "payment", "shipping", "notification"];
    let ports: Vec<(&str, u16)> = names.iter().map(|n| (*n, Stack::free_port())).collect();
    let (smtp, console) = (Stack::free_port(), Stack::free_port());
    let log = dir.join("stack.log");
    eprintln!("orderctl stack {id}: data in {}", dir.display());

    let mut accepted = 0;
    for run in 1..=2 {
        let mut child = spawn_stack(&id, &dir, &ports, smtp, console);
        wait_listening(&mut child, console, &log).await;
        let (ok, n, text) = load(&ports, &dir.join(format!("load-{run}.json"))).await;
        assert!(ok && n > 0, "run {run}: the load failed:\n{text}");
        accepted += n;
        let pid = child.id().expect("running");
        signal(pid, "TERM").await;
        let status = wait_exit(&mut child, Duration::from_secs(90), &log).await;
        assert!(
            status.success(),
            "run {run}: orderctl stack exited with {status} on SIGTERM:\n{}",
            orderflow_e2e::stack::tail(&log, 40)
        );
        for (name, port) in ports.iter().chain(&[("the event-flow page", console)]) {
            assert!(
                tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .is_err(),
                "run {run}: {name} still listens on {port} after orderctl stack exited"
            );
        }
    }
    let admin = env::admin_database_url();
    let mut url = reqwest::Url::parse(&admin).expect("admin URL");
    url.set_path(&format!("/{id}_order"));
    let pool = sqlx::PgPool::connect(url.as_str()).await.expect("order db");
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("counting orders");
    pool.close().await;
    assert_eq!(
        orders, accepted,
        "the order database keeps both runs' orders"
    );

    // A service that dies.
    let mut child = spawn_stack(&id, &dir, &ports, smtp, console);
    wait_listening(&mut child, console, &log).await;
    let pid: u32 = std::fs::read_to_string(dir.join("logs/pids/shipping.pid"))
        .expect("the shipping service's pid file")
        .trim()
        .parse()
        .expect("a pid");
    signal(pid, "KILL").await;
    let status = wait_exit(&mut child, Duration::from_secs(60), &log).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status when a service dies:\n{text}"
    );
    assert!(
        text.contains("shipping-service exited unexpectedly"),
        "orderctl stack names the service that died:\n{text}"
    );
    let order = ports[0].1;
    let stopped = poll_until(Duration::from_secs(30), || async move {
        match tokio::net::TcpStream::connect(("127.0.0.1", order)).await {
            Err(_) => Ok(()),
            Ok(_) => Err("still listening".to_owned()),
        }
    })
    .await;
    assert!(
        stopped.is_ok(),
        "the other services are stopped once orderctl stack has exited"
    );
}

/// `orderctl bench run`, as `scripts/bench` runs it, on a short load: the
/// run completes, its invariants hold, and it leaves the summary, the plot
/// and the per-run copy behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderctl_bench_run_measures_and_checks_a_short_load() {
    let id = new_id("bench_e2e");
    let out = env::target_dir().join("e2e-logs").join(&id);
    let output = Command::new(orderctl())
        .current_dir(env::workspace_root())
        .args(["bench", "run", "--id", &id, "--idle-wait", "1s"])
        .arg("--out-dir")
        .arg(&out)
        .args(["--rate", "10", "--duration", "3s", "--skus", "5"])
        .args(["--settle-timeout", "120s", "--no-progress"])
        .env("ORDERFLOW_TOPIC_PREFIX", format!("{id}."))
        .kill_on_drop(true)
        .output()
        .await
        .expect("running orderctl bench run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "orderctl bench run failed ({}):\n{text}",
        output.status
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
            .expect("summary.json is JSON");
    assert_eq!(summary["invariants_ok"], true, "{summary:#}");
    let violations = summary["invariants"]["violations"]
        .as_object()
        .expect("the checks");
    assert!(
        violations.len() >= 10 && violations.values().all(|v| v == 0),
        "{violations:?}"
    );
    assert!(
        summary["accepted"].as_i64().is_some_and(|n| n > 0),
        "{summary:#}"
    );
    assert_eq!(
        summary["plot"],
        out.join("summary-latency.svg").display().to_string()
    );
    assert!(out.join("summary-latency.svg").is_file());
    for svc in ["order", "inventory", "payment", "shipping", "notification"] {
        let prom = out.join("metrics").join(format!("{svc}-service.prom"));
        let body = std::fs::read_to_string(&prom).unwrap_or_default();
        assert!(
            body.contains("orderflow_"),
            "{} holds the service's metrics",
            prom.display()
        );
    }
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .expect("runs/")
        .collect();
    assert_eq!(runs.len(), 1, "one copy per run");
}

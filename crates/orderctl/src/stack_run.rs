//! `orderctl stack`: the five services, the SMTP sink and the event-flow
//! page in the foreground, started with the stack library the end-to-end
//! tests and `orderctl bench run` use, on the broker, registry and
//! PostgreSQL of the environment (`KAFKA_BOOTSTRAP_SERVERS`,
//! `SCHEMA_REGISTRY_URL` as an admin for the schemas,
//! `ORDERFLOW_SERVICES_REGISTRY_URL` as the services' read-only user,
//! `ORDERFLOW_TEST_DATABASE_URL` as PostgreSQL's admin). It creates the
//! topics and registers the schemas, keeps the services' databases between
//! runs, waits until every service is ready and its consumer holds
//! partitions, and then supervises: when one of them exits on its own it
//! says which and exits 1; on Ctrl-C or SIGTERM it stops them all cleanly
//! (every consumer leaves its group) and exits 0. `scripts/up` runs it
//! after starting the infrastructure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use orderflow_stack::{Service, Smtp, Stack, StackOptions};

/// Options of `orderctl stack`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the logs (`logs/<service>.log`) and the e-mails (`mail/`, a
    /// Maildir) go.
    #[arg(long, default_value = ".orderflow")]
    pub data_dir: PathBuf,
    /// The services' ports, `name=port` each (`order`, `inventory`,
    /// `payment`, `shipping`, `notification`); the defaults are 8080,
    /// 8082, 8083, 8084 and 8085.
    #[arg(long = "port", value_parser = parse_port)]
    pub ports: Vec<(Service, u16)>,
    /// The services' databases, kept between runs: `{service}` is replaced
    /// by the service's name.
    #[arg(long, default_value = "{service}_service", value_parser = parse_database_pattern)]
    pub databases: String,
    /// The address the services listen on.
    #[arg(long, env = "ORDERFLOW_HTTP_HOST", default_value = "127.0.0.1")]
    pub http_host: String,
    /// The public key the services check tokens with (default the
    /// development key, deploy/dev-keys/jwt-dev.pub.pem).
    #[arg(long, env = "AUTH_PUBLIC_KEY_FILE")]
    pub auth_public_key_file: Option<PathBuf>,
    /// The SMTP sink: `aiosmtpd` (needs `ORDERFLOW_PYTHON`), `orderctl`
    /// (`orderctl smtp-sink`), or `external` (one already listening on
    /// --smtp-port, as scripts/up starts it).
    #[arg(long, default_value = "aiosmtpd", value_parser = crate::bench::parse_smtp)]
    pub smtp: Smtp,
    /// The SMTP sink's port.
    #[arg(long, default_value_t = 1025)]
    pub smtp_port: u16,
    /// Serve the event-flow page (`orderctl console`) on this port of
    /// 127.0.0.1.
    #[arg(long)]
    pub console: Option<u16>,
    /// How long each service's consumer may take to be assigned its
    /// partitions.
    #[arg(long, env = "ORDERFLOW_ASSIGN_TIMEOUT", default_value = "120s",
          value_parser = crate::load::schedule::parse_positive_duration)]
    pub assign_timeout: Duration,
}

fn parse_port(s: &str) -> Result<(Service, u16), String> {
    let (name, port) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not name=port"))?;
    let svc = Service::ALL
        .into_iter()
        .find(|svc| svc.name() == name)
        .ok_or_else(|| {
            format!("{name:?} is not a service (order, inventory, payment, shipping, notification)")
        })?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
    Ok((svc, port))
}

fn parse_database_pattern(s: &str) -> Result<String, String> {
    let example = s.replace("{service}", "notification");
    if !s.contains("{service}") {
        return Err(format!("{s:?} must contain {{service}}"));
    }
    if example.len() > 63
        || !example
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "{s:?}: database names are lower-case letters, digits and '_', at most 63 bytes"
        ));
    }
    Ok(s.to_owned())
}

/// The default port of each service.
const PORTS: [(Service, u16); 5] = [
    (Service::Order, 8080),
    (Service::Inventory, 8082),
    (Service::Payment, 8083),
    (Service::Shipping, 8084),
    (Service::Notification, 8085),
];

/// Runs the stack until it is stopped (0) or a process dies (1).
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        std::env::current_dir()?.join(&args.data_dir)
    };
    let logs = data.join("logs");
    let mut ports: BTreeMap<Service, u16> = PORTS.into_iter().collect();
    ports.extend(args.ports.iter().copied());
    let mut options = StackOptions::deployed("local", logs.clone(), args.smtp);
    options.topic_prefix = Some(std::env::var("ORDERFLOW_TOPIC_PREFIX").unwrap_or_default());
    options.kept_databases = Some(args.databases.clone());
    options.ports = ports;
    options.http_host = args.http_host.clone();
    options.auth_public_key_file = args.auth_public_key_file.clone();
    options.smtp_port = Some(args.smtp_port);
    options.maildir = Some(data.join("mail"));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stack = tokio::select! {
        stack = Stack::start(options) => stack.context("starting the services")?,
        _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        _ = term.recv() => return Ok(ExitCode::SUCCESS),
    };
    // Ready is not yet consuming: a consumer holds partitions only once its
    // group has rebalanced (a few seconds; after a crash, until the broker
    // expires the dead member). Until then the saga would not move.
    eprintln!("==> waiting for every service's consumer to be assigned its partitions");
    let assigned = async {
        for svc in Service::ALL {
            stack.assigned_within(svc, args.assign_timeout).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = assigned => {
            if let Err(e) = r {
                eprintln!("orderctl stack: {e:#}\n{}", stack.diagnostics());
                stack.stop_all().await;
                return Ok(ExitCode::from(1));
            }
        }
        _ = tokio::signal::ctrl_c() => { stack.stop_all().await; return Ok(ExitCode::SUCCESS) }
        _ = term.recv() => { stack.stop_all().await; return Ok(ExitCode::SUCCESS) }
    }
    let mut console = match args.console {
        Some(port) => Some(console(&stack, port, &args).await?),
        None => None,
    };
    eprintln!(
        "==> the services are up: {}",
        Service::ALL
            .iter()
            .map(|s| format!("{s} {}", stack.url(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let code = tokio::select! {
        (what, status) = stack.supervise() => {
            eprintln!("orderctl stack: {what} exited unexpectedly ({status})\n{}", stack.diagnostics());
            ExitCode::from(1)
        }
        status = console_exit(console.as_mut()) => {
            eprintln!("orderctl stack: the event-flow page exited unexpectedly ({status})");
            ExitCode::from(1)
        }
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = term.recv() => ExitCode::SUCCESS,
    };
    eprintln!("==> stopping the services");
    if let Some(console) = console.as_mut() {
        stack.stop_helper(console).await;
    }
    stack.stop_all().await;
    Ok(code)
}

/// Resolves when the console exits on its own (never without one).
async fn console_exit(console: Option<&mut orderflow_stack::Helper>) -> std::process::ExitStatus {
    let Some(console) = console else {
        return std::future::pending().await;
    };
    loop {
        if let Some(status) = console.exit_status() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `orderctl console` on 127.0.0.1:`port`, reading the stack's services.
async fn console(stack: &Stack, port: u16, args: &Args) -> anyhow::Result<orderflow_stack::Helper> {
    let mut argv = vec![
        "console".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    let key = args
        .auth_public_key_file
        .clone()
        .unwrap_or_else(|| orderflow_stack::env::dev_key("jwt-dev.pub.pem"));
    argv.push("--auth-public-key-file".to_owned());
    argv.push(key.display().to_string());
    for svc in Service::ALL {
        argv.push("--service".to_owned());
        argv.push(format!("{}={}", svc.binary(), stack.url(svc)));
    }
    stack
        .spawn_helper(
            "console",
            &orderflow_stack::env::bin_dir().join("orderctl"),
            &argv,
            &[],
            port,
        )
        .await
        .with_context(|| format!("starting the event-flow page on port {port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, String> {
        crate::parse_flags("stack", argv)
    }

    #[test]
    fn ports_and_database_names_are_checked() {
        let a = parse(&["--port", "order=9080", "--databases", "dev_{service}"]).expect("valid");
        assert_eq!(a.ports, [(Service::Order, 9080)]);
        assert_eq!(a.databases, "dev_{service}");
        assert_eq!(a.smtp_port, 1025);
        let e = parse(&["--port", "orders=9080"]).expect_err("unknown service");
        assert!(e.contains("is not a service"), "{e}");
        let e = parse(&["--port", "order=0"]).expect_err("port 0");
        assert!(e.contains("is not a port"), "{e}");
        let e = parse(&["--port", "order"]).expect_err("no port");
        assert!(e.contains("is not name=port"), "{e}");
        let e = parse(&["--databases", "orders"]).expect_err("no placeholder");
        assert!(e.contains("must contain {service}"), "{e}");
        let e = parse(&["--databases", "Drop Table {service}"]).expect_err("bad name");
        assert!(e.contains("lower-case letters"), "{e}");
    }
}

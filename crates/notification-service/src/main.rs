//! The orderflow notification service.
//!
//! E-mails the customer over SMTP: a confirmation when the order's shipment
//! is created (`ShippingCreated`), unless the order was cancelled first, and
//! a notice when the order is cancelled (`OrderCancelled`). Each outcome is
//! recorded and announced (`NotificationSent` / `NotificationFailed`). See
//! `docs/saga.md`.
//!
//! SMTP is plain (unencrypted): meant for a local sink or relay. TLS is not
//! supported yet.

mod api;
mod db;
#[cfg(test)]
mod db_tests;
mod email;
mod handlers;
mod mailer;
mod smtp;
#[cfg(test)]
mod test_smtp;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use lettre::message::Mailbox;
use orderflow_events::consumer::ConsumerOptions;
use orderflow_service::config::parse_duration;
use orderflow_service::{Context, Parts, ServiceSpec};

use crate::handlers::Notifier;
use crate::mailer::{Mailer, SmtpSettings};

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "notification-service";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

#[derive(clap::Parser)]
#[command(
    name = "notification-service",
    version,
    about = "E-mails customers about their orders over SMTP."
)]
struct Config {
    #[command(flatten)]
    common: orderflow_service::CommonConfig,

    /// SMTP server host (plain SMTP; TLS is not supported yet).
    #[arg(long, env = "SMTP_HOST", default_value = "127.0.0.1")]
    smtp_host: String,

    /// SMTP server port.
    #[arg(long, env = "SMTP_PORT", default_value_t = 1025)]
    smtp_port: u16,

    /// SMTP username (set together with SMTP_PASSWORD, or neither).
    #[arg(long, env = "SMTP_USERNAME")]
    smtp_username: Option<String>,

    /// SMTP password (set together with SMTP_USERNAME, or neither).
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,

    /// `From` of every e-mail.
    #[arg(
        long,
        env = "SMTP_FROM",
        default_value = "orderflow <orders@orderflow.local>"
    )]
    smtp_from: String,

    /// E-mails sent at once per consumer worker (1-64): by default one
    /// worker per consumed topic, so per topic; per partition with
    /// CONSUMER_WORKERS_PER_TOPIC=0. Each order's e-mails still go out in
    /// order; each e-mail in flight holds a database connection (see
    /// DATABASE_MAX_CONNECTIONS).
    #[arg(
        long,
        env = "EMAILS_IN_FLIGHT_PER_WORKER",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    emails_in_flight_per_worker: u16,

    /// Budget for one SMTP exchange, e.g. `10s`, `500ms`.
    #[arg(long, env = "SMTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    smtp_timeout: Duration,
}

impl Config {
    /// The SMTP settings, checked.
    fn smtp(&self) -> anyhow::Result<SmtpSettings> {
        let from: Mailbox = self
            .smtp_from
            .parse()
            .with_context(|| format!("SMTP_FROM {:?} is not a mailbox", self.smtp_from))?;
        let credentials = match (&self.smtp_username, &self.smtp_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => anyhow::bail!("set both SMTP_USERNAME and SMTP_PASSWORD, or neither"),
        };
        anyhow::ensure!(
            !self.smtp_host.trim().is_empty(),
            "SMTP_HOST must not be empty"
        );
        Ok(SmtpSettings {
            host: self.smtp_host.clone(),
            port: self.smtp_port,
            credentials,
            from,
            timeout: self.smtp_timeout,
        })
    }
}

/// mimalloc instead of the system allocator: under load glibc's `malloc`
/// and `free` took about a fifth of a service's CPU (`docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let smtp = config.smtp()?;
    let in_flight = usize::from(config.emails_in_flight_per_worker);
    orderflow_service::run(
        ServiceSpec {
            name: "notification",
            source: SOURCE,
            default_port: 8085,
            migrator: &MIGRATOR,
            openapi: include_str!("../openapi.json"),
        },
        config.common,
        |ctx| build(ctx, &smtp, in_flight),
    )
    .await
}

/// Wires the routes and the consumer.
fn build(ctx: &Context, smtp: &SmtpSettings, in_flight: usize) -> anyhow::Result<Parts> {
    tracing::info!(host = %smtp.host, port = smtp.port, auth = smtp.credentials.is_some(), "SMTP (plain, no TLS)");
    let notifier = Notifier {
        mailer: Arc::new(Mailer::new(smtp)),
        catalog: ctx.catalog.clone(),
    };
    let consumer = ctx
        .consumer()
        .with_options(ConsumerOptions {
            // Sending waits on the SMTP server, not on this process: several
            // e-mails of different orders go out at once.
            lanes_per_worker: in_flight,
            // An e-mail sent is not undone by a rollback: another record's
            // failure must not send it again.
            keep_applied_on_failure: true,
            ..ctx.consumer_options()
        })
        .on_each(handlers::EVENT_TYPES, notifier);
    Ok(Parts {
        router: api::router(api::AppState {
            pool: ctx.api_pool.clone(),
        }),
        consumer: Some(consumer),
        tasks: Vec::new(),
    })
}

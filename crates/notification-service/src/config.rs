//! The notification service's own settings (SMTP and concurrency); the
//! shared ones are [`orderflow_service::CommonConfig`].

use std::time::Duration;

use anyhow::Context as _;
use lettre::message::Mailbox;
use orderflow_service::config::parse_duration;

use crate::handlers::mail::SmtpSettings;

/// Settings only the notification service has.
#[derive(Clone, clap::Args)]
pub struct Settings {
    /// SMTP server host (plain SMTP; TLS is not supported yet).
    #[arg(long, env = "SMTP_HOST", default_value = "127.0.0.1")]
    pub smtp_host: String,

    /// SMTP server port.
    #[arg(long, env = "SMTP_PORT", default_value_t = 1025)]
    pub smtp_port: u16,

    /// SMTP username (set together with SMTP_PASSWORD, or neither).
    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    /// SMTP password (set together with SMTP_USERNAME, or neither).
    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,

    /// `From` of every e-mail.
    #[arg(
        long,
        env = "SMTP_FROM",
        default_value = "orderflow <orders@orderflow.local>"
    )]
    pub smtp_from: String,

    /// E-mails sent at once per consumer worker (1-64): by default one
    /// worker per consumed topic, so per topic; per partition with
    /// CONSUMER_WORKERS_PER_TOPIC=0. A worker's batch sends e-mails of
    /// different orders at once (each order's in order) and records them
    /// all in one transaction, on one database connection.
    #[arg(
        long,
        env = "EMAILS_IN_FLIGHT_PER_WORKER",
        default_value_t = 8,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub emails_in_flight_per_worker: u16,

    /// Budget for one SMTP exchange, e.g. `10s`, `500ms`.
    #[arg(long, env = "SMTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub smtp_timeout: Duration,
}

impl Settings {
    /// E-mails sent at once per consumer worker.
    pub fn in_flight(&self) -> usize {
        usize::from(self.emails_in_flight_per_worker)
    }

    /// The SMTP settings, checked.
    pub fn smtp(&self) -> anyhow::Result<SmtpSettings> {
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

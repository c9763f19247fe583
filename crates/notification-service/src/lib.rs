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

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod handlers;

use std::sync::Arc;

use orderflow_events::consumer::ConsumerOptions;
use orderflow_service::{Context, Parts, ServiceSpec};

use crate::handlers::mail::Mailer;
use crate::handlers::OnSagaEvents;

/// `source` of the events this service emits, and its consumer group.
pub const SOURCE: &str = "notification-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Name, port and migrations, for
/// [`orderflow_service::run`].
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "notification",
        source: SOURCE,
        default_port: 8085,
        migrator: &MIGRATOR,
    }
}

/// Wires the routes and the consumer.
pub fn build(ctx: &Context, settings: &config::Settings) -> anyhow::Result<Parts> {
    let smtp = settings.smtp()?;
    let in_flight = settings.in_flight();
    tracing::info!(host = %smtp.host, port = smtp.port, auth = smtp.credentials.is_some(), "SMTP (plain, no TLS)");
    let notifier = OnSagaEvents {
        mailer: Arc::new(Mailer::new(&smtp)),
        catalog: ctx.catalog.clone(),
        // Sending waits on the SMTP server, not on this process: a batch
        // sends e-mails of different orders at once, and commits them all
        // in one transaction.
        in_flight,
    };
    let consumer = ctx
        .consumer()
        .with_options(ConsumerOptions {
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

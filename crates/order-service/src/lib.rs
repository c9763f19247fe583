//! The orderflow order service: accepts orders over HTTP, starts the saga
//! with `OrderCreated`, follows the other services' events to advance each
//! order's status, and cancels orders whose saga fails or stalls. A second
//! consumer group projects every saga event into the order journal
//! ([`db::journal`]), the read model `orderctl replay` rebuilds.

pub mod api;
pub mod config;
pub mod db;
pub mod domain;
pub mod handlers;

use orderflow_events::access::ORDER_JOURNAL;
use orderflow_events::consumer::{ConsumerOptions, EventConsumer};
use orderflow_events::EventType;
use orderflow_service::{Context, Parts, ServiceSpec};

/// `source` of every event this service emits.
pub const SOURCE: &str = "order-service";

/// The service's own migrations (versions from 100; 1 and 2 are the shared
/// outbox and inbox).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Name, port and migrations, for
/// [`orderflow_service::run`].
pub fn spec() -> ServiceSpec {
    ServiceSpec {
        name: "order",
        source: SOURCE,
        default_port: 8080,
        migrator: &MIGRATOR,
    }
}

/// The service's routes, consumer, journal projection and deadline sweeper.
pub fn build(ctx: &Context, settings: &config::Settings) -> anyhow::Result<Parts> {
    let saga_timeout = settings.saga_timeout()?;
    domain::metrics::register();
    let router = api::router(api::AppState {
        pool: ctx.api_pool.clone(),
        topics: ctx.catalog.clone(),
        timeout: saga_timeout,
        writer: db::writer::OrderWriter::spawn(ctx.api_pool.clone()),
        prices: Default::default(),
    });

    let consumer = ctx
        .consumer()
        .on(EventType::InventoryAdjusted, handlers::OnInventoryAdjusted)
        // One handler for every saga event, so a batch mixing their types is
        // applied in one `handle_batch` call.
        .on_each(
            handlers::ORDER_EVENT_TYPES,
            handlers::OnSagaEvents {
                topics: ctx.catalog.clone(),
                timeout: saga_timeout,
            },
        );

    let sweeper = handlers::deadline::Sweeper {
        pool: ctx.pool.clone(),
        topics: ctx.catalog.clone(),
        timeout: settings.saga_timeout,
        interval: settings.deadline_check_interval,
    };
    let shutdown = ctx.shutdown.clone();
    let journal = journal_consumer(
        ctx,
        settings.journal_fetch_interval(),
        settings.audit_event_copies,
    );
    let journal_shutdown = ctx.shutdown.clone();
    Ok(Parts {
        router,
        consumer: Some(consumer),
        tasks: vec![
            (
                "deadline-sweeper",
                Box::pin(async move { sweeper.run(shutdown).await }),
            ),
            (
                "journal-projection",
                Box::pin(async move { Ok(journal.run(journal_shutdown).await?) }),
            ),
        ],
    })
}

/// The journal projection: every event type of the saga's streams, in the
/// service's consumer group followed by `.journal` (the access table's
/// [`ORDER_JOURNAL`]), with the service's batch settings, no quarantine
/// (the journal records an event the saga's handlers set aside) and no
/// inbox: a journal row is keyed by its event id and written with
/// `ON CONFLICT DO NOTHING`, so a redelivery writes nothing new and the
/// inbox's row per event would only cost (measured in docs/benchmarks.md,
/// "What the order journal costs").
fn journal_consumer(
    ctx: &Context,
    fetch_interval: Option<std::time::Duration>,
    audit_copies: bool,
) -> EventConsumer {
    let group = format!("{}.{}", ctx.consumer_group, ORDER_JOURNAL.name);
    let options = ConsumerOptions {
        quarantine: Vec::new(),
        use_inbox: false,
        ..ctx.consumer_options()
    };
    let mut kafka = ctx.kafka.clone();
    if let Some(every) = fetch_interval {
        // librdkafka holds a partition's next fetch back this long while
        // its queue holds at least `queued.min.messages` records.
        kafka
            .extra
            .push(("queued.min.messages".to_owned(), "1".to_owned()));
        kafka.extra.push((
            "fetch.queue.backoff.ms".to_owned(),
            every.as_millis().to_string(),
        ));
    }
    EventConsumer::new(
        &kafka,
        &group,
        ctx.pool.clone(),
        ctx.codec.clone(),
        ctx.catalog.clone(),
    )
    .with_options(options)
    .on_each(
        &handlers::journal_event_types(),
        handlers::OnJournalEvents {
            topics: ctx.catalog.clone(),
            source: SOURCE,
            audit_copies,
        },
    )
}

//! Publishes one sample `OrderCreated` through the outbox and the relay,
//! then exits: a minimal example of the producer side of the library.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/order_service \
//!   cargo run -p orderflow-events --example publish_sample
//! ```
//! Reads `KAFKA_BOOTSTRAP_SERVERS`, `SCHEMA_REGISTRY_URL` and the topic
//! variables like the services do.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderflow_events::codec::AvroCodec;
use orderflow_events::events::{Address, OrderCreated, OrderLine};
use orderflow_events::kafka::KafkaConfig;
use orderflow_events::registry::RegistryClient;
use orderflow_events::relay::{Relay, RelayOptions};
use orderflow_events::{outbox, Envelope, TopicCatalog};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let registry =
        std::env::var("SCHEMA_REGISTRY_URL").unwrap_or_else(|_| "http://127.0.0.1:8081".into());
    let pool = sqlx::PgPool::connect(&db)
        .await
        .context("connecting to DATABASE_URL")?;
    orderflow_events::migrate(&pool).await?;
    let catalog = TopicCatalog::from_env()?;
    let order_id = uuid::Uuid::new_v4().to_string();
    let event = Envelope::new(
        "order-service",
        order_id.clone(),
        OrderCreated {
            order_id: order_id.clone(),
            customer_id: "c-1".into(),
            email: "ann@example.com".into(),
            currency: "EUR".into(),
            items: vec![OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: 1999,
            }],
            total: 3998,
            shipping_address: Address {
                name: "Ann".into(),
                line1: "Main St 1".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            payment_token: None,
            payment_method_id: Some("pm_0123456789abcdef0123456789abcdef".into()),
        },
    )
    .with_metadata("userId", "c-1");
    let mut tx = pool.begin().await?;
    outbox::enqueue(&mut tx, &catalog, &order_id, &event, None).await?;
    tx.commit().await?;

    let codec = Arc::new(AvroCodec::new(RegistryClient::new(&registry)?, false)?);
    let relay = Relay::new(
        pool.clone(),
        &KafkaConfig::from_env("publish-sample"),
        codec,
        RelayOptions::default(),
    )?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (left, _) = outbox::backlog(&mut *pool.acquire().await?).await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "outbox not drained after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await??;
    println!(
        "published OrderCreated {} for order {order_id}",
        event.event_id
    );
    Ok(())
}

//! Topic administration: create the topics of a [`TopicCatalog`]
//! idempotently.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::KafkaConfig;
use crate::topics::TopicSpec;

/// What happened to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// It was created.
    Created,
    /// It existed already (left as it is).
    Existed,
}

/// Creates every topic in `specs` that does not exist yet, with its
/// partition count and `retention.ms`. Topics that already exist are left
/// alone, so running it twice is harmless.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<Vec<(String, TopicOutcome)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let retention: Vec<String> = specs.iter().map(|s| s.retention_ms.to_string()).collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&retention)
        .map(|(s, r)| {
            NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(replication))
                .set("retention.ms", r)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new_topics.iter(), &opts).await?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(name) => out.push((name, TopicOutcome::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((name, TopicOutcome::Existed))
            }
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(out)
}

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

/// Every partition of those of `topics` that exist on the broker, as
/// `(topic, partition)`, by topic and partition. Blocking.
pub fn topic_partitions(
    client: &rdkafka::consumer::BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, i32)>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let metadata = client.fetch_metadata(None, timeout)?;
    let mut out: Vec<(String, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
        .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_owned(), p.id())))
        .collect();
    out.sort();
    Ok(out)
}

/// Commits `offsets` for the group of `client` (a client that never
/// joins it: the broker takes such a commit only while the group has no
/// members) and reads them back, so a commit the broker did not keep is an
/// error. Blocking.
pub fn commit_offsets(
    client: &rdkafka::consumer::BaseConsumer,
    group: &str,
    offsets: &rdkafka::TopicPartitionList,
    timeout: Duration,
) -> Result<(), String> {
    use rdkafka::consumer::{CommitMode, Consumer};
    client
        .commit(offsets, CommitMode::Sync)
        .map_err(|e| format!("committing offsets for {group}: {e}"))?;
    let kept = client
        .committed_offsets(offsets.clone(), timeout)
        .map_err(|e| format!("reading back the offsets of {group}: {e}"))?;
    for (want, got) in offsets.elements().iter().zip(kept.elements()) {
        if want.offset() != got.offset() {
            return Err(format!(
                "{group} on {}[{}]: committed {:?}, the broker kept {:?}",
                want.topic(),
                want.partition(),
                want.offset(),
                got.offset()
            ));
        }
    }
    Ok(())
}

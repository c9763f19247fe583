//! The faults of the campaign, injected one at a time in a seeded order:
//! each kind once per round, in a shuffled order, with random gaps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use orderflow_events::admin::{commit_offsets, topic_partitions};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::{Service, Stack, Stop};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL a service, start it again.
    ServiceKill,
    /// Stop the broker (SIGKILL or SIGTERM, alternately), start it again on
    /// its durable storage.
    BrokerRestart,
    /// Crash PostgreSQL (immediate shutdown), start it again.
    PostgresCrash,
    /// Stop the schema registry for a while.
    RegistryDown,
    /// Stop the SMTP server for longer than the saga deadline.
    SmtpDown,
    /// Stop a service, move its consumer group back, start it: records it
    /// applied are delivered again.
    DuplicateDelivery,
    /// Publish records that are not events onto a saga topic.
    Poison,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::ServiceKill,
        Kind::BrokerRestart,
        Kind::PostgresCrash,
        Kind::RegistryDown,
        Kind::SmtpDown,
        Kind::DuplicateDelivery,
        Kind::Poison,
    ];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::ServiceKill => "service SIGKILL + restart",
            Kind::BrokerRestart => "broker restart (durable)",
            Kind::PostgresCrash => "PostgreSQL crash + restart",
            Kind::RegistryDown => "schema registry down",
            Kind::SmtpDown => "SMTP down past the deadline",
            Kind::DuplicateDelivery => "duplicate deliveries",
            Kind::Poison => "poison records",
        })
    }
}

pub use orderflow_stack::check::Poisoned;

/// What was injected.
#[derive(Debug, Default)]
pub struct Injected {
    /// Faults by kind.
    pub by_kind: BTreeMap<Kind, usize>,
    /// One line per fault, in order (`t+12.3s service SIGKILL: payment`).
    pub log: Vec<String>,
    /// Poison records published.
    pub poison: Vec<Poisoned>,
    /// Records that consumer groups were moved back over.
    pub rewound: i64,
}

/// Injects faults until `duration` has passed (at least one round of every
/// kind); `saga_timeout` is how long the SMTP outage must outlast.
pub async fn run(
    stack: &Stack,
    rng: &mut StdRng,
    duration: Duration,
    saga_timeout: Duration,
) -> anyhow::Result<Injected> {
    let start = Instant::now();
    let mut injected = Injected::default();
    let mut broker_kills = 0usize;
    loop {
        let mut round = Kind::ALL.to_vec();
        round.shuffle(rng);
        for kind in round {
            let gap = Duration::from_millis(rng.gen_range(500..2500));
            tokio::time::sleep_until(Instant::now() + gap).await;
            let at = start.elapsed().as_secs_f64();
            let detail = inject(
                stack,
                rng,
                kind,
                saga_timeout,
                &mut broker_kills,
                &mut injected,
            )
            .await
            .with_context(|| format!("injecting {kind}"))?;
            eprintln!("chaos: t+{at:.1}s {kind}: {detail}");
            injected.log.push(format!("t+{at:.1}s {kind}: {detail}"));
            *injected.by_kind.entry(kind).or_default() += 1;
        }
        if start.elapsed() >= duration {
            return Ok(injected);
        }
    }
}

async fn inject(
    stack: &Stack,
    rng: &mut StdRng,
    kind: Kind,
    saga_timeout: Duration,
    broker_kills: &mut usize,
    injected: &mut Injected,
) -> anyhow::Result<String> {
    let hold = |d: Duration| tokio::time::sleep_until(Instant::now() + d);
    Ok(match kind {
        Kind::ServiceKill => {
            let svc = *Service::ALL.choose(rng).expect("services");
            stack.kill(svc).await;
            stack.start_service(svc).await;
            svc.to_string()
        }
        Kind::BrokerRestart => {
            *broker_kills += 1;
            let how = if *broker_kills % 2 == 1 {
                Stop::Kill
            } else {
                Stop::Term
            };
            stack.stop_broker(how).await;
            hold(Duration::from_millis(rng.gen_range(500..3000))).await;
            stack.start_broker().await;
            format!("{how:?}")
        }
        Kind::PostgresCrash => {
            let down = Duration::from_millis(rng.gen_range(1000..4000));
            stack.stop_postgres(Stop::Quit).await;
            hold(down).await;
            stack.start_postgres().await;
            format!("down {:.1}s", down.as_secs_f64())
        }
        Kind::RegistryDown => {
            let down = Duration::from_millis(rng.gen_range(3000..8000));
            stack.stop_registry(Stop::Term).await;
            hold(down).await;
            stack.start_registry().await;
            format!("down {:.1}s", down.as_secs_f64())
        }
        Kind::SmtpDown => {
            let down = saga_timeout + Duration::from_millis(rng.gen_range(2000..5000));
            stack.stop_smtp().await;
            hold(down).await;
            stack.start_smtp().await;
            format!("down {:.1}s", down.as_secs_f64())
        }
        Kind::DuplicateDelivery => {
            let svc = *Service::ALL.choose(rng).expect("services");
            let by = rng.gen_range(10..40);
            let c = stack.get(svc, "/health/consumers").await;
            let group = c.json["group"]
                .as_str()
                .with_context(|| format!("no group in {}", c.describe()))?
                .to_owned();
            let topics: Vec<String> = c.json["consumers"][0]["topics"]
                .as_array()
                .with_context(|| format!("no topics in {}", c.describe()))?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            stack.terminate(svc).await;
            let bootstrap = stack.kafka_bootstrap_servers().to_owned();
            let g = group.clone();
            let rewound =
                tokio::task::spawn_blocking(move || rewind(&bootstrap, &g, &topics, by)).await??;
            stack.start_service(svc).await;
            injected.rewound += rewound;
            format!("{svc}: group {group} moved back over {rewound} records")
        }
        Kind::Poison => {
            let topics = ["order-events", "payment-events", "shipping-events"];
            let topic = format!("{}{}", stack.prefix, topics.choose(rng).expect("topics"));
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", stack.kafka_bootstrap_servers())
                .set("message.timeout.ms", "30000")
                .create()
                .context("creating a producer")?;
            let payloads: [&[u8]; 2] = [
                b"not an event at all",
                // Confluent framing with a schema id no registry knows.
                &[0, 0x7f, 0xff, 0xff, 0x01, 2, 4, 6],
            ];
            for payload in payloads {
                let key = uuid::Uuid::new_v4().to_string();
                let delivery = producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(payload),
                        KAFKA_TIMEOUT,
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("publishing poison to {topic}: {e}"))?;
                injected.poison.push(Poisoned {
                    topic: topic.clone(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                });
            }
            format!("2 records on {topic}")
        }
    })
}

/// Moves `group`'s committed offsets on `topics` back by `by` records per
/// partition (the group must have no active member); returns how many
/// records will be delivered again.
fn rewind(bootstrap: &str, group: &str, topics: &[String], by: i64) -> anyhow::Result<i64> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a Kafka client")?;
    let mut list = TopicPartitionList::new();
    for (topic, partition) in
        topic_partitions(&client, topics, KAFKA_TIMEOUT).context("broker metadata")?
    {
        list.add_partition(&topic, partition);
    }
    let committed = client
        .committed_offsets(list, KAFKA_TIMEOUT)
        .with_context(|| format!("committed offsets of {group}"))?;
    let mut back = TopicPartitionList::new();
    let mut total = 0;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            let to = (o - by).max(0);
            if to < o {
                total += o - to;
                back.add_partition_offset(e.topic(), e.partition(), Offset::Offset(to))?;
            }
        }
    }
    if back.count() == 0 {
        return Ok(0);
    }
    commit_offsets(&client, group, &back, KAFKA_TIMEOUT).map_err(anyhow::Error::msg)?;
    Ok(total)
}

//! Who may do what on the broker: one principal per service, each allowed
//! to write only the stream it owns (and the dead-letter topics of what it
//! reads) and to read only the streams it consumes, plus the schema
//! registry's, a read-only `reader` for consumers outside orderflow, and
//! `console` for the event-flow page (`orderctl console`): it reads the
//! dead letters and sends them back.
//!
//! This table is the one place the broker's ACLs come from:
//! `orderctl acls` renders it as `kafka-acls.sh` commands
//! (`deploy/kafka/acls.sh`, used by docker compose and the Kubernetes
//! job), and the end-to-end suite checks that each running service consumes
//! exactly the streams its row names. A service that tries to publish
//! another's event (a forged `PaymentProcessed` from anything but the
//! payment service) is refused by a broker that enforces these ACLs.

use std::fmt::Write as _;

use crate::topics::{Stream, TopicCatalog};

/// A service's row: its principal (`User:<source>`, also its consumer
/// group), the stream it owns, the streams it consumes and the projections
/// it keeps (each in a consumer group of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceAccess {
    /// The service's `source`, e.g. `payment-service`: its SASL user and
    /// its consumer group (behind the topic prefix).
    pub principal: &'static str,
    /// The one stream it writes its events to.
    pub owns: Stream,
    /// The streams it reads.
    pub reads: &'static [Stream],
    /// Whether it records the actions its callers take on the audit trail
    /// (`audit-events`, which every such service writes and none owns).
    pub audits: bool,
    /// Read models it projects from the log, each in its own group.
    pub projections: &'static [Projection],
}

/// A read model a service projects from the log in a consumer group of its
/// own (`<service group>.<name>`), so it can be rebuilt or rewound apart
/// from the service's own consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    /// Its name: the suffix of its group.
    pub name: &'static str,
    /// The streams it reads.
    pub reads: &'static [Stream],
}

/// The order journal: every event of the saga's five streams by
/// correlation id, kept by the order service.
pub const ORDER_JOURNAL: Projection = Projection {
    name: "journal",
    reads: &[
        Stream::Order,
        Stream::Inventory,
        Stream::Payment,
        Stream::Shipping,
        Stream::Notification,
    ],
};

impl ServiceAccess {
    /// Its consumer groups behind `prefix`, each with the streams it
    /// reads: the service's own (`<prefix><principal>`) and one per
    /// projection (`<prefix><principal>.<name>`).
    pub fn groups(&self, prefix: &str) -> Vec<(String, &'static [Stream])> {
        let own = format!("{prefix}{}", self.principal);
        let mut out = vec![(own.clone(), self.reads)];
        for p in self.projections {
            out.push((format!("{own}.{}", p.name), p.reads));
        }
        out
    }

    /// Every stream one of its groups reads, each once, in table order.
    pub fn all_reads(&self) -> Vec<Stream> {
        let mut out: Vec<Stream> = Vec::new();
        for &s in self
            .reads
            .iter()
            .chain(self.projections.iter().flat_map(|p| p.reads))
        {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// The streams the consumer group `group` (behind `prefix`) reads: a
/// service's own group or one of its projections'.
pub fn group_reads(group: &str, prefix: &str) -> Option<&'static [Stream]> {
    SERVICES
        .iter()
        .flat_map(|s| s.groups(prefix))
        .find(|(g, _)| g == group)
        .map(|(_, reads)| reads)
}

/// Every service, what it owns and what it reads.
pub const SERVICES: [ServiceAccess; 5] = [
    ServiceAccess {
        principal: "order-service",
        owns: Stream::Order,
        reads: &[
            Stream::Inventory,
            Stream::Payment,
            Stream::Shipping,
            Stream::Notification,
        ],
        audits: true,
        projections: &[ORDER_JOURNAL],
    },
    ServiceAccess {
        principal: "inventory-service",
        owns: Stream::Inventory,
        reads: &[Stream::Order, Stream::Payment, Stream::Shipping],
        audits: true,
        projections: &[],
    },
    ServiceAccess {
        principal: "payment-service",
        owns: Stream::Payment,
        reads: &[Stream::Order, Stream::Inventory],
        audits: true,
        projections: &[],
    },
    ServiceAccess {
        principal: "shipping-service",
        owns: Stream::Shipping,
        reads: &[Stream::Order, Stream::Payment],
        audits: true,
        projections: &[],
    },
    ServiceAccess {
        principal: "notification-service",
        owns: Stream::Notification,
        reads: &[Stream::Order, Stream::Shipping],
        audits: false,
        projections: &[],
    },
];

/// The schema registry's principal: its `_schemas` topic and its groups.
pub const SCHEMA_REGISTRY: &str = "schema-registry";

/// Read-only principal for consumers outside orderflow (any group).
pub const READER: &str = "reader";

/// The event-flow page's principal (`orderctl console`): it reads every
/// dead-letter topic (without a consumer group) and sends a dead letter
/// back to the stream it came from, recording that on `audit-events`. It
/// reads no stream and joins no group.
pub const CONSOLE: &str = "console";

/// What kind of resource an ACL is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
}

/// One allow rule: `principal` may do `operations` on `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// The user, without `User:`.
    pub principal: String,
    /// Topic or group.
    pub resource: Resource,
    /// Its name; with `prefixed`, every name starting with it.
    pub name: String,
    /// Whether `name` is a prefix.
    pub prefixed: bool,
    /// Kafka operations: `Read`, `Write`, `Create`, `DescribeConfigs`
    /// (`Read` and `Write` imply `Describe`).
    pub operations: Vec<&'static str>,
}

impl Acl {
    fn new(principal: &str, resource: Resource, name: &str, operations: &[&'static str]) -> Self {
        Self {
            principal: principal.to_owned(),
            resource,
            name: name.to_owned(),
            prefixed: false,
            operations: operations.to_vec(),
        }
    }
}

/// Every rule, for topics named by `catalog` and groups behind `prefix`
/// (the `ORDERFLOW_TOPIC_PREFIX` the services are given).
pub fn acls(catalog: &TopicCatalog, prefix: &str) -> Vec<Acl> {
    let mut out = Vec::new();
    for s in &SERVICES {
        let p = s.principal;
        // Write implies Describe; an idempotent producer needs no more.
        out.push(Acl::new(
            p,
            Resource::Topic,
            catalog.topic(s.owns),
            &["Write"],
        ));
        if s.audits {
            out.push(Acl::new(
                p,
                Resource::Topic,
                catalog.topic(Stream::Audit),
                &["Write"],
            ));
        }
        for r in s.all_reads() {
            let topic = catalog.topic(r);
            out.push(Acl::new(p, Resource::Topic, topic, &["Read"]));
            // A record its handler gives up on goes to the dead letters of
            // the topic it came from.
            out.push(Acl::new(
                p,
                Resource::Topic,
                &catalog.dlq_topic(topic),
                &["Write"],
            ));
        }
        for (group, _) in s.groups(prefix) {
            out.push(Acl::new(p, Resource::Group, &group, &["Read"]));
        }
    }
    out.push(Acl::new(
        SCHEMA_REGISTRY,
        Resource::Topic,
        "_schemas",
        &["Read", "Write", "Create", "DescribeConfigs"],
    ));
    out.push(Acl {
        prefixed: true,
        ..Acl::new(
            SCHEMA_REGISTRY,
            Resource::Group,
            "schema-registry",
            &["Read"],
        )
    });
    for stream in Stream::ALL {
        out.push(Acl::new(
            READER,
            Resource::Topic,
            catalog.topic(stream),
            &["Read"],
        ));
    }
    out.push(Acl::new(READER, Resource::Group, "*", &["Read"]));
    for stream in Stream::ALL {
        let topic = catalog.topic(stream);
        out.push(Acl::new(
            CONSOLE,
            Resource::Topic,
            &catalog.dlq_topic(topic),
            &["Read"],
        ));
        // A redrive puts the record back on its stream; the audit record of
        // it goes to audit-events, one of these.
        out.push(Acl::new(CONSOLE, Resource::Topic, topic, &["Write"]));
    }
    out
}

/// `rules` as a POSIX shell script of `kafka-acls.sh` commands, run with
/// `KAFKA_ACLS` (the tool), `KAFKA_BOOTSTRAP` and `KAFKA_ADMIN_CONFIG` (an
/// admin's client properties) in the environment. `kafka-acls --add` of a
/// rule that exists changes nothing, so the script may run at every start.
pub fn render_kafka_acls(rules: &[Acl]) -> String {
    let mut out = String::from(
        "#!/bin/sh\n\
         # Generated by `orderctl acls` from crates/events/src/access.rs: do not edit.\n\
         # Needs KAFKA_ACLS (kafka-acls.sh), KAFKA_BOOTSTRAP and KAFKA_ADMIN_CONFIG.\n\
         set -eu\n",
    );
    for a in rules {
        let resource = match a.resource {
            Resource::Topic => "--topic",
            Resource::Group => "--group",
        };
        let ops: String = a
            .operations
            .iter()
            .map(|o| format!(" --operation {o}"))
            .collect();
        let pattern = if a.prefixed {
            " --resource-pattern-type prefixed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\"$KAFKA_ACLS\" --bootstrap-server \"$KAFKA_BOOTSTRAP\" --command-config \"$KAFKA_ADMIN_CONFIG\" \
             --add --allow-principal User:{}{ops} {resource} '{}'{pattern}",
            a.principal, a.name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::events::EventType;

    fn rules() -> Vec<Acl> {
        acls(&TopicCatalog::default(), "")
    }

    /// `(resource, name)` that `principal` may do `op` on.
    fn allowed(rules: &[Acl], principal: &str, op: &str) -> BTreeSet<(Resource, String)> {
        rules
            .iter()
            .filter(|a| a.principal == principal && a.operations.contains(&op))
            .map(|a| (a.resource, a.name.clone()))
            .collect()
    }

    #[test]
    fn each_service_writes_exactly_its_own_stream_and_the_dead_letters_of_what_it_reads() {
        let rules = rules();
        let c = TopicCatalog::default();
        for s in &SERVICES {
            let mut expected: BTreeSet<(Resource, String)> =
                BTreeSet::from([(Resource::Topic, c.topic(s.owns).to_owned())]);
            if s.audits {
                expected.insert((Resource::Topic, c.topic(Stream::Audit).to_owned()));
            }
            for r in s.all_reads() {
                expected.insert((Resource::Topic, c.dlq_topic(c.topic(r))));
            }
            assert_eq!(
                allowed(&rules, s.principal, "Write"),
                expected,
                "{}",
                s.principal
            );
            let reads: BTreeSet<(Resource, String)> = s
                .all_reads()
                .into_iter()
                .map(|r| (Resource::Topic, c.topic(r).to_owned()))
                .chain(s.groups("").into_iter().map(|(g, _)| (Resource::Group, g)))
                .collect();
            assert_eq!(
                allowed(&rules, s.principal, "Read"),
                reads,
                "{}",
                s.principal
            );
        }
    }

    #[test]
    fn every_event_is_written_by_the_one_service_whose_stream_it_is() {
        // Each service owns a different stream, and no other service may
        // write it: a forged event of another service's stream is refused.
        // The audit trail is the exception: every service whose callers act
        // writes it, and no service reads it. Besides the owners, only the
        // event-flow page's `console` writes a stream: it sends dead
        // letters back where they came from (for an operator's token, and
        // recorded on the audit trail).
        let rules = rules();
        let c = TopicCatalog::default();
        for t in EventType::ALL {
            let topic = c.topic(t.stream()).to_owned();
            let writers: Vec<&str> = rules
                .iter()
                .filter(|a| a.resource == Resource::Topic && a.name == topic)
                .filter(|a| a.operations.contains(&"Write"))
                .map(|a| a.principal.as_str())
                .collect();
            let owners: Vec<&str> = SERVICES
                .iter()
                .filter(|s| match t.stream() {
                    Stream::Audit => s.audits,
                    stream => s.owns == stream,
                })
                .map(|s| s.principal)
                .chain([CONSOLE])
                .collect();
            assert!(owners.len() > 1, "{t} has no writer");
            assert_eq!(writers, owners, "{t}");
            assert!(
                SERVICES
                    .iter()
                    .all(|s| !s.all_reads().contains(&Stream::Audit)),
                "no service reads the audit trail"
            );
        }
    }

    #[test]
    fn a_projection_has_a_group_of_its_own_and_reads_what_it_names() {
        let order = &SERVICES[0];
        assert_eq!(
            order.groups("t."),
            vec![
                ("t.order-service".to_owned(), order.reads),
                ("t.order-service.journal".to_owned(), ORDER_JOURNAL.reads),
            ]
        );
        // The journal reads the order service's own stream too.
        assert_eq!(order.all_reads()[..4], order.reads[..]);
        assert_eq!(order.all_reads()[4], Stream::Order);
        assert_eq!(
            group_reads("t.order-service.journal", "t."),
            Some(ORDER_JOURNAL.reads)
        );
        assert_eq!(
            group_reads("t.payment-service", "t."),
            Some(SERVICES[2].reads)
        );
        assert_eq!(group_reads("t.nobody", "t."), None);
        assert_eq!(group_reads("order-service", "t."), None);
    }

    #[test]
    fn the_reader_and_the_registry_write_no_event() {
        let rules = rules();
        assert!(allowed(&rules, READER, "Write").is_empty());
        assert_eq!(
            allowed(&rules, SCHEMA_REGISTRY, "Write"),
            BTreeSet::from([(Resource::Topic, "_schemas".to_owned())])
        );
    }

    #[test]
    fn the_console_reads_only_dead_letters_and_writes_only_the_streams() {
        let c = TopicCatalog::default();
        let rules = acls(&c, "");
        let dlqs: BTreeSet<(Resource, String)> = Stream::ALL
            .iter()
            .map(|&s| (Resource::Topic, c.dlq_topic(c.topic(s))))
            .collect();
        let streams: BTreeSet<(Resource, String)> = Stream::ALL
            .iter()
            .map(|&s| (Resource::Topic, c.topic(s).to_owned()))
            .collect();
        assert_eq!(allowed(&rules, CONSOLE, "Read"), dlqs);
        assert_eq!(allowed(&rules, CONSOLE, "Write"), streams);
        assert!(streams.contains(&(Resource::Topic, "audit-events".to_owned())));
        let others: Vec<&Acl> = rules
            .iter()
            .filter(|r| r.principal == CONSOLE)
            .filter(|r| r.resource != Resource::Topic || r.prefixed)
            .collect();
        assert!(others.is_empty(), "no group, no prefix: {others:?}");
    }

    #[test]
    fn names_follow_the_topic_table_and_the_prefix() {
        let c = TopicCatalog::with_prefix("staging.");
        let rules = acls(&c, "staging.");
        assert!(allowed(&rules, "payment-service", "Write")
            .contains(&(Resource::Topic, "staging.payment-events".to_owned())));
        assert!(allowed(&rules, "payment-service", "Read")
            .contains(&(Resource::Group, "staging.payment-service".to_owned())));
    }

    #[test]
    fn the_committed_script_is_the_rendered_table() {
        let committed = include_str!("../../../deploy/base/kafka/acls.sh");
        assert!(
            committed == render_kafka_acls(&rules()),
            "deploy/base/kafka/acls.sh is not what the table renders: \
             run `orderctl acls > deploy/base/kafka/acls.sh`"
        );
    }

    #[test]
    fn the_script_has_one_command_per_rule() {
        let rules = rules();
        let script = render_kafka_acls(&rules);
        let commands: Vec<&str> = script.lines().filter(|l| l.starts_with('"')).collect();
        assert_eq!(commands.len(), rules.len());
        assert!(commands.contains(
            &"\"$KAFKA_ACLS\" --bootstrap-server \"$KAFKA_BOOTSTRAP\" --command-config \
              \"$KAFKA_ADMIN_CONFIG\" --add --allow-principal User:payment-service \
              --operation Write --topic 'payment-events'"
        ));
    }
}

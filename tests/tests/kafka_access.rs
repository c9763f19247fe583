//! The broker access table (`orderflow_events::access`, from which the ACLs
//! of docker compose and Kubernetes are rendered) against the running
//! services: each service's consumers (its own group's and its
//! projections') subscribe to exactly the streams its row lets them read,
//! so the ACLs neither lock a service out of a topic it
//! needs nor give it one it does not use. (That each service may write only
//! its own stream is checked on the table itself, in the events crate: the
//! local broker has no authorizer to try it on.)

use std::collections::BTreeSet;
use std::time::Duration;

use orderflow_e2e::{Service, Stack};
use orderflow_events::access::SERVICES;
use orderflow_events::TopicCatalog;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_consumes_exactly_the_streams_its_acls_let_it_read() {
    let stack = Stack::start_default().await;
    stack.wait_all_assigned(Duration::from_secs(60)).await;
    let catalog = TopicCatalog::with_prefix(&stack.prefix);
    for svc in Service::ALL {
        let row = SERVICES
            .iter()
            .find(|s| s.principal == svc.binary())
            .unwrap_or_else(|| panic!("{svc} has no row in the access table"));
        let r = stack.get(svc, "/health/consumers").await.expect(200);
        assert_eq!(
            r.json["group"].as_str(),
            Some(format!("{}{}", stack.prefix, row.principal).as_str()),
            "{svc}: the group the ACLs name: {}",
            r.describe()
        );
        let subscribed: BTreeSet<String> = r.json["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["topics"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        // Its own group's and its projections' (the order journal).
        let allowed: BTreeSet<String> = row
            .all_reads()
            .into_iter()
            .map(|s| catalog.topic(s).to_owned())
            .collect();
        let groups: BTreeSet<String> = r.json["consumers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["group"].as_str().map(str::to_owned))
            .collect();
        let named: BTreeSet<String> = row
            .groups(&stack.prefix)
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        assert_eq!(groups, named, "{svc}: {}", r.describe());
        assert_eq!(subscribed, allowed, "{svc}: {}", r.describe());
    }
}

//! The topology view: the access table's services, topics and edges, with
//! the numbers of the services' `/metrics`, scraped every interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use orderflow_events::access::SERVICES;
use orderflow_events::topics::Stream;
use orderflow_events::TopicCatalog;
use serde::Serialize;

use super::metrics::{self, rate, ServiceCounts};
use super::Console;

/// How long a scrape of one service may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the topology view shows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Topology {
    services: Vec<ServiceNode>,
    topics: Vec<TopicNode>,
    edges: Vec<Edge>,
    /// When the services were last scraped (RFC 3339).
    scraped_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceNode {
    name: String,
    url: String,
    /// Its `/metrics` answered the last scrape.
    up: bool,
    error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicNode {
    name: String,
    /// Records on its dead-letter topic, as the services that read it
    /// last counted them.
    dead_letters: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Edge {
    /// `produce` (service → topic) or `consume` (topic → service).
    kind: &'static str,
    service: String,
    topic: String,
    /// Events per second over the last scrape interval (produced, or
    /// read by any of the service's consumer groups).
    rate: Option<f64>,
    /// Records the service's groups are behind on the topic.
    lag: Option<f64>,
    /// Records of the topic the service's groups dead-lettered, in all.
    dead_lettered: Option<f64>,
}

/// Scrapes every service each `interval` and keeps the topology.
pub(super) async fn scrape_forever(c: Arc<Console>, interval: Duration) {
    let mut previous: Option<(Instant, BTreeMap<String, ServiceCounts>)> = None;
    let mut tick = tokio::time::interval(interval);
    // A scrape slower than the interval delays the next one; no bursts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let scrapes = futures::future::join_all(
            c.services
                .iter()
                .map(|(name, url)| scrape(&c.http, name, url)),
        )
        .await;
        let mut nodes = Vec::new();
        let mut counts = BTreeMap::new();
        for ((name, url), result) in c.services.iter().zip(scrapes) {
            let (up, error) = match result {
                Ok(sc) => {
                    counts.insert(name.clone(), sc);
                    (true, None)
                }
                Err(e) => (false, Some(e)),
            };
            nodes.push(ServiceNode {
                name: name.clone(),
                url: url.clone(),
                up,
                error,
            });
        }
        let before = previous
            .as_ref()
            .map(|(at, c)| (now.duration_since(*at).as_secs_f64(), c));
        let topology = Topology {
            services: nodes,
            topics: topics(&c.catalog, &counts),
            edges: edges(&c.catalog, &counts, before),
            scraped_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        };
        *c.topology.write().await = topology;
        previous = Some((now, counts));
    }
}

async fn scrape(http: &reqwest::Client, name: &str, url: &str) -> Result<ServiceCounts, String> {
    let text = http
        .get(format!("{url}/metrics"))
        .timeout(SCRAPE_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("{name}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(ServiceCounts::of(&metrics::parse(&text)))
}

/// The saga's topics and the audit trail's, with their dead letters.
fn topics(catalog: &TopicCatalog, counts: &BTreeMap<String, ServiceCounts>) -> Vec<TopicNode> {
    Stream::ALL
        .iter()
        .map(|&s| {
            let name = catalog.topic(s).to_owned();
            let dlq = catalog.dlq_topic(&name);
            let dead_letters = counts
                .values()
                .filter_map(|c| c.dlq_records.get(&dlq).copied())
                .reduce(f64::max);
            TopicNode { name, dead_letters }
        })
        .collect()
}

/// Every producing and consuming edge of the access table, with the
/// numbers of the last scrape (and rates against the one before).
fn edges(
    catalog: &TopicCatalog,
    counts: &BTreeMap<String, ServiceCounts>,
    before: Option<(f64, &BTreeMap<String, ServiceCounts>)>,
) -> Vec<Edge> {
    let rate_of =
        |service: &str, topic: &str, pick: fn(&ServiceCounts) -> &BTreeMap<String, f64>| {
            let now = counts
                .get(service)
                .map(|c| pick(c).get(topic).copied().unwrap_or(0.0))?;
            let (secs, prev) = before?;
            let was = prev
                .get(service)
                .map(|c| pick(c).get(topic).copied().unwrap_or(0.0));
            Some(rate(was, now, secs))
        };
    let mut out = Vec::new();
    for s in &SERVICES {
        let service = s.principal;
        let mut writes = vec![s.owns];
        if s.audits {
            writes.push(Stream::Audit);
        }
        for w in writes {
            let topic = catalog.topic(w);
            out.push(Edge {
                kind: "produce",
                service: service.to_owned(),
                topic: topic.to_owned(),
                rate: rate_of(service, topic, |c| &c.published),
                lag: None,
                dead_lettered: None,
            });
        }
        for r in s.all_reads() {
            let topic = catalog.topic(r);
            let c = counts.get(service);
            out.push(Edge {
                kind: "consume",
                service: service.to_owned(),
                topic: topic.to_owned(),
                rate: rate_of(service, topic, |c| &c.consumed),
                lag: c.map(|c| c.lag.get(topic).copied().unwrap_or(0.0)),
                dead_lettered: c.map(|c| c.dead_lettered.get(topic).copied().unwrap_or(0.0)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_of_the_access_table_with_rates_from_two_scrapes() {
        let catalog = TopicCatalog::default();
        let text = |n: f64| {
            format!(
                "orderflow_events_consumed_total{{group=\"payment-service\",topic=\"order-events\",event_type=\"OrderCreated\",outcome=\"applied\"}} {n}\n\
                 orderflow_consumer_lag{{group=\"payment-service\",topic=\"order-events\",partition=\"3\"}} 5\n\
                 orderflow_events_published_total{{topic=\"payment-events\",event_type=\"PaymentProcessed\"}} {n}\n"
            )
        };
        let first = BTreeMap::from([(
            "payment-service".to_owned(),
            ServiceCounts::of(&metrics::parse(&text(10.0))),
        )]);
        let second = BTreeMap::from([(
            "payment-service".to_owned(),
            ServiceCounts::of(&metrics::parse(&text(30.0))),
        )]);
        let e = edges(&catalog, &second, Some((2.0, &first)));
        let find = |kind: &str, service: &str, topic: &str| {
            e.iter()
                .find(|x| x.kind == kind && x.service == service && x.topic == topic)
                .unwrap_or_else(|| panic!("{kind} {service} {topic} in {e:#?}"))
        };
        let read = find("consume", "payment-service", "order-events");
        assert_eq!(read.rate, Some(10.0));
        assert_eq!(read.lag, Some(5.0));
        assert_eq!(
            find("produce", "payment-service", "payment-events").rate,
            Some(10.0)
        );
        assert_eq!(
            find("produce", "payment-service", "audit-events").rate,
            Some(0.0)
        );
        // A service not scraped has no numbers, but its edges are there.
        let down = find("consume", "shipping-service", "payment-events");
        assert_eq!((down.rate, down.lag), (None, None));
        // Every service writes its own topic; the journal reads order-events.
        for s in &SERVICES {
            find("produce", s.principal, catalog.topic(s.owns));
        }
        find("consume", "order-service", "order-events");
        // One scrape: numbers but no rates yet.
        assert_eq!(
            edges(&catalog, &second, None)
                .iter()
                .find(|x| x.kind == "consume"
                    && x.service == "payment-service"
                    && x.topic == "order-events")
                .unwrap()
                .rate,
            None
        );
    }
}

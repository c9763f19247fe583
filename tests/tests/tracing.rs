//! Observability end to end: one order is one OpenTelemetry trace across the
//! five services (exported over OTLP/HTTP to a receiver this test runs), and
//! `/metrics` counts what the saga did.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use orderflow_e2e::client::{parse_metrics, send};
use orderflow_e2e::{eventually, OrderBody, Service, Stack, StackOptions};
use orderflow_events::access::SERVICES;
use prost::Message as _;
use reqwest::Method;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct SpanRec {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    attributes: BTreeMap<String, String>,
}

impl SpanRec {
    fn describe(&self) -> String {
        format!(
            "{} {:?} {:?} span={} parent={} trace={}",
            self.service, self.kind, self.name, self.span_id, self.parent_span_id, self.trace_id
        )
    }
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) on a free
/// port, keeping every span it is sent.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<SpanRec>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

async fn collect(State(spans): State<Arc<Mutex<Vec<SpanRec>>>>, body: Bytes) -> impl IntoResponse {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(SpanRec {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                    attributes: attributes(&s.attributes),
                });
            }
        }
    }
    spans.lock().expect("spans lock").extend(out);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

async fn start_receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the OTLP receiver");
    let addr = listener.local_addr().expect("receiver address");
    let spans = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(spans.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        endpoint: format!("http://{addr}"),
        spans,
        server,
    }
}

fn random_hex(bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes * 2 {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes * 2);
    s
}

const SERVICE_NAMES: [&str; 5] = [
    "order-service",
    "inventory-service",
    "payment-service",
    "shipping-service",
    "notification-service",
];

/// Checks the trace `trace_id` in `spans`: all five services, producer and
/// consumer spans, every consumer span a child of a producer span of
/// another service. `Err` describes what is still missing.
/// A projection's consumer (the order journal) also reads its own
/// service's events: its spans' parents may be that service's producer
/// spans. `projections` are their consumer groups.
fn check_trace(
    spans: &[SpanRec],
    trace_id: &str,
    projections: &BTreeSet<String>,
) -> Result<Vec<SpanRec>, String> {
    let trace: Vec<SpanRec> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    let missing: Vec<&str> = SERVICE_NAMES
        .iter()
        .copied()
        .filter(|s| !services.contains(s))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} spans in the trace, none yet from {missing:?} ({} spans received in total)",
            trace.len(),
            spans.len()
        ));
    }
    let by_id: HashMap<&str, &SpanRec> = trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let consumers: Vec<&SpanRec> = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Consumer)
        .collect();
    let producers = trace
        .iter()
        .filter(|s| s.kind == SpanKind::Producer)
        .count();
    // OrderCreated, InventoryReserved, PaymentProcessed, OrderConfirmed,
    // ShippingCreated, NotificationSent, OrderShipped at least.
    if producers < 7 || consumers.len() < 7 {
        return Err(format!(
            "{producers} producer and {} consumer spans so far",
            consumers.len()
        ));
    }
    for c in &consumers {
        match by_id.get(c.parent_span_id.as_str()) {
            Some(p)
                if p.kind == SpanKind::Producer
                    && (p.service != c.service
                        || c.attributes
                            .get("messaging.consumer.group.name")
                            .is_some_and(|g| projections.contains(g))) => {}
            Some(p) => {
                return Err(format!(
                "consumer span [{}] has a parent that is not another service's producer span: [{}]",
                c.describe(),
                p.describe()
            ))
            }
            None => {
                return Err(format!(
                    "the parent of consumer span [{}] has not arrived (yet)",
                    c.describe()
                ))
            }
        }
    }
    Ok(trace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_all_five_services() {
    let receiver = start_receiver().await;
    let mut options = StackOptions::default();
    for svc in Service::ALL {
        for (k, v) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ] {
            options.env.push((svc, k.to_owned(), v.to_owned()));
        }
    }
    let stack = Stack::start(options).await;
    let sku = stack.sku("TRACE");
    stack.set_stock(&sku, 10).await;

    // The client's own trace: the order service continues it.
    let trace_id = random_hex(16);
    let client_span = random_hex(8);
    let r = send(
        stack
            .request(Method::POST, Service::Order, "/orders")
            .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
            .json(&stack.order_json(&OrderBody::new(&sku, 1)).await),
    )
    .await
    .expect(202);
    let id = r.json["orderId"].as_str().expect("orderId").to_owned();
    stack.wait_status(&id, "SHIPPED").await;

    let spans = receiver.spans.clone();
    let projections: BTreeSet<String> = SERVICES
        .iter()
        .flat_map(|s| s.groups(&stack.prefix).into_iter().skip(1))
        .map(|(group, _)| group)
        .collect();
    assert!(!projections.is_empty());
    let trace = eventually(
        "one trace with spans of all five services, producer -> consumer across Kafka",
        &stack.diagnostics(),
        stack.timeout,
        || {
            let spans = spans.clone();
            let trace_id = trace_id.clone();
            let projections = projections.clone();
            async move {
                let all = spans.lock().expect("spans lock").clone();
                check_trace(&all, &trace_id, &projections)
            }
        },
    )
    .await;
    let dump = trace
        .iter()
        .map(SpanRec::describe)
        .collect::<Vec<_>>()
        .join("\n");

    // The HTTP server span continues the client's traceparent ...
    let server = trace
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.service == "order-service")
        .unwrap_or_else(|| panic!("no server span of the order service:\n{dump}"));
    assert_eq!(server.name, "POST /orders", "{dump}");
    assert_eq!(server.parent_span_id, client_span, "{dump}");
    assert_eq!(
        server
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("202"),
        "{server:?}"
    );
    // ... and the OrderCreated publish span is its child.
    let created = trace
        .iter()
        .find(|s| {
            s.kind == SpanKind::Producer
                && s.attributes.get("event_type").map(String::as_str) == Some("OrderCreated")
        })
        .unwrap_or_else(|| panic!("no publish span of OrderCreated:\n{dump}"));
    assert_eq!(created.service, "order-service", "{dump}");
    assert_eq!(created.parent_span_id, server.span_id, "{dump}");
    let order_topic = format!("{}order-events", stack.prefix);
    assert_eq!(created.name, format!("publish {order_topic}"), "{dump}");
    for (k, v) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "publish"),
        ("messaging.destination.name", order_topic.as_str()),
        ("messaging.kafka.message.key", id.as_str()),
    ] {
        assert_eq!(
            created.attributes.get(k).map(String::as_str),
            Some(v),
            "{k} of {created:?}"
        );
    }
    assert!(
        created.attributes.contains_key("messaging.kafka.offset"),
        "{created:?}"
    );

    // Inventory processes OrderCreated as a child of that publish span (the
    // other consumers of the topic skip it, in spans of their own), and what
    // it emits (InventoryReserved) is published as a child of that.
    let processed = trace
        .iter()
        .find(|s| {
            s.kind == SpanKind::Consumer
                && s.parent_span_id == created.span_id
                && s.service == "inventory-service"
        })
        .unwrap_or_else(|| panic!("inventory did not process OrderCreated in this trace:\n{dump}"));
    assert_eq!(processed.name, format!("process {order_topic}"), "{dump}");
    // Consumer groups carry the stack's topic prefix (isolated per stack).
    let group = format!("{}inventory-service", stack.prefix);
    for (k, v) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.consumer.group.name", group.as_str()),
        ("messaging.kafka.message.key", id.as_str()),
        ("event_type", "OrderCreated"),
        ("outcome", "applied"),
    ] {
        assert_eq!(
            processed.attributes.get(k).map(String::as_str),
            Some(v),
            "{k} of {processed:?}"
        );
    }
    let reserved = trace
        .iter()
        .find(|s| s.kind == SpanKind::Producer && s.parent_span_id == processed.span_id)
        .unwrap_or_else(|| panic!("no publish span under inventory's process span:\n{dump}"));
    assert_eq!(reserved.service, "inventory-service", "{dump}");
    assert_eq!(
        reserved.attributes.get("event_type").map(String::as_str),
        Some("InventoryReserved"),
        "{dump}"
    );

    // The trace id is in the log lines written inside those spans.
    let log = std::fs::read_to_string(stack.log_dir().join("order.log")).expect("order log");
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("order accepted") && l.contains(&id))
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(
        accepted[0].contains(&format!("trace_id={trace_id}")),
        "no trace id in {:?}",
        accepted[0]
    );
    let inventory_log =
        std::fs::read_to_string(stack.log_dir().join("inventory.log")).expect("inventory log");
    assert!(
        inventory_log.contains(&format!("trace_id={trace_id}")),
        "the inventory service never logged inside the order's trace"
    );
}

async fn scrape(stack: &Stack, svc: Service) -> Result<HashMap<String, f64>, String> {
    let r = stack.get(svc, "/metrics").await;
    if r.status != 200 {
        return Err(r.describe());
    }
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.starts_with("application/openmetrics-text") {
        return Err(format!("content type {ct:?}"));
    }
    Ok(parse_metrics(&r.text))
}

/// Waits until every `(series, expected)` of `svc`'s `/metrics` holds:
/// `Some(n)` exactly `n`, `None` present and > 0.
async fn wait_for_metrics(stack: &Stack, svc: Service, want: &[(String, Option<f64>)]) {
    eventually(
        &format!("the metrics of {svc}"),
        &stack.diagnostics(),
        Duration::from_secs(30),
        || async move {
            let m = scrape(stack, svc).await?;
            for (series, expected) in want {
                let got = m.get(series).copied();
                let ok = match expected {
                    Some(n) => got == Some(*n),
                    None => got.is_some_and(|v| v > 0.0),
                };
                if !ok {
                    return Err(format!("{series} is {got:?}, want {expected:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_the_orders_run() {
    let mut options = StackOptions::default();
    for svc in Service::ALL {
        // Statistics (and so the lag gauge) every second instead of 10 s.
        options.env.push((
            svc,
            "KAFKA_PROP_STATISTICS_INTERVAL_MS".into(),
            "1000".into(),
        ));
    }
    let stack = Stack::start(options).await;
    let sku = stack.sku("METRICS");
    stack.set_stock(&sku, 10).await;

    let shipped = [
        stack.create_order(&OrderBody::new(&sku, 1)).await,
        stack.create_order(&OrderBody::new(&sku, 2)).await,
    ];
    let declined = stack
        .create_order(&OrderBody::new(&sku, 1).token("tok_chargeDeclined"))
        .await;
    for id in &shipped {
        stack.wait_status(id, "SHIPPED").await;
    }
    stack.wait_status(&declined, "CANCELLED").await;

    let p = &stack.prefix;
    let s = |x: &str| x.to_owned();
    wait_for_metrics(
        &stack,
        Service::Order,
        &[
            (s("orderflow_orders_created_total"), Some(3.0)),
            (s(r#"orderflow_orders_total{status="SHIPPED"}"#), Some(2.0)),
            (s(r#"orderflow_orders_total{status="CANCELLED"}"#), Some(1.0)),
            (
                s(r#"orderflow_saga_duration_seconds_count{outcome="shipped"}"#),
                Some(2.0),
            ),
            (
                s(r#"orderflow_saga_duration_seconds_count{outcome="cancelled"}"#),
                Some(1.0),
            ),
            (
                s(r#"orderflow_http_requests_total{method="POST",route="/orders",status="202"}"#),
                Some(3.0),
            ),
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}order-events",event_type="OrderCreated"}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}order-events",event_type="OrderShipped"}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}order-events",event_type="OrderCancelled"}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"orderflow_events_consumed_total{{group="{p}order-service",topic="{p}payment-events",event_type="PaymentFailed",outcome="applied"}}"#
                ),
                Some(1.0),
            ),
            (
                format!(
                    r#"orderflow_events_consumed_total{{group="{p}order-service",topic="{p}notification-events",event_type="NotificationSent",outcome="applied"}}"#
                ),
                None,
            ),
            (s("orderflow_outbox_backlog"), Some(0.0)),
        ],
    )
    .await;
    wait_for_metrics(
        &stack,
        Service::Inventory,
        &[
            (
                format!(
                    r#"orderflow_events_consumed_total{{group="{p}inventory-service",topic="{p}order-events",event_type="OrderCreated",outcome="applied"}}"#
                ),
                Some(3.0),
            ),
            (
                format!(
                    r#"orderflow_handler_duration_seconds_count{{group="{p}inventory-service",topic="{p}order-events",event_type="OrderCreated"}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}inventory-events",event_type="InventoryReserved"}}"#
                ),
                None,
            ),
        ],
    )
    .await;
    wait_for_metrics(
        &stack,
        Service::Payment,
        &[
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}payment-events",event_type="PaymentProcessed"}}"#
                ),
                None,
            ),
            (
                format!(
                    r#"orderflow_events_published_total{{topic="{p}payment-events",event_type="PaymentFailed"}}"#
                ),
                None,
            ),
        ],
    )
    .await;

    // Every service serves its metrics; the lag gauge appears once
    // librdkafka reported statistics, and settles at zero lag.
    let stack = &stack;
    for svc in Service::ALL {
        let m = eventually(
            &format!("consumer lag gauges of {svc}"),
            &stack.diagnostics(),
            Duration::from_secs(30),
            || async move {
                let m = scrape(stack, svc).await?;
                let lags: Vec<(&String, &f64)> = m
                    .iter()
                    .filter(|(k, _)| k.starts_with("orderflow_consumer_lag{"))
                    .collect();
                if lags.is_empty() {
                    return Err("no orderflow_consumer_lag series yet".into());
                }
                if let Some((k, v)) = lags.iter().find(|(_, v)| **v > 0.0) {
                    return Err(format!("{k} = {v}"));
                }
                Ok(m)
            },
        )
        .await;
        assert!(
            m.contains_key("orderflow_outbox_oldest_age_seconds"),
            "{svc}: {m:?}"
        );
    }
}

//! Logs, traces and HTTP metrics.
//!
//! - Every span gets real OpenTelemetry ids (a `tracing-opentelemetry`
//!   layer is always installed), so trace context propagates through HTTP,
//!   the outbox and Kafka whether or not spans are exported.
//! - Spans are exported over OTLP/HTTP (protobuf) only when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//!   is set; the batch processor honours the standard `OTEL_BSP_*` variables
//!   and `OTEL_SERVICE_NAME` overrides the service name (default: the
//!   service's source name, e.g. `order-service`).
//! - Every log line written inside a span carries the span's `trace_id`
//!   (a trailing `trace_id=…` in text, a top-level `"trace_id"` in JSON).
//! - HTTP requests get a server span (continuing an incoming `traceparent`)
//!   and `orderflow_http_requests_total` /
//!   `orderflow_http_request_duration_seconds` by matched route.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use orderflow_events::metrics::prometheus_client;
use orderflow_events::trace_context::TraceContext;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tracing::{Instrument as _, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// The tracer provider; flush it with [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

/// Whether an OTLP endpoint is configured.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

fn resource(source: &'static str) -> Resource {
    // The builder's detectors read OTEL_SERVICE_NAME and
    // OTEL_RESOURCE_ATTRIBUTES; the source name is only the default.
    let mut builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |s| s.trim().is_empty()) {
        builder = builder.with_service_name(source);
    }
    builder.build()
}

/// Installs logging (`RUST_LOG`, default `info`, in `format`) and tracing
/// for the service `source`.
pub fn init(source: &'static str, format: LogFormat) -> Telemetry {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(source));
    let mut exporting = false;
    let mut export_error = None;
    if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_batch_exporter(exporter);
                exporting = true;
            }
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(source))
        .with_filter(LevelFilter::INFO);

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .event_format(WithTraceId {
                inner: tracing_subscriber::fmt::format().with_ansi(ansi),
                json: false,
            })
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .map_event_format(|inner| WithTraceId { inner, json: true })
            .boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init();
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
    match export_error {
        Some(e) => tracing::warn!(error = %e, "cannot export traces; continuing without"),
        None if exporting => tracing::info!(service = source, "exporting traces over OTLP/HTTP"),
        None => {}
    }
    Telemetry {
        provider,
        exporting,
    }
}

impl Telemetry {
    /// Exports the spans still buffered and stops exporting, waiting at
    /// most `timeout`.
    pub async fn shutdown(&self, timeout: Duration) {
        if !self.exporting {
            return;
        }
        let provider = self.provider.clone();
        // Shutting down blocks on the exporter thread: not on an async worker.
        let task = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout));
        match tokio::time::timeout(timeout + Duration::from_millis(500), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("flushing traces failed: {e}"),
            Ok(Err(e)) => eprintln!("flushing traces failed: {e}"),
            Err(_) => eprintln!("flushing traces timed out after {timeout:?}"),
        }
    }
}

/// The trace id of the span an event is recorded in (or of its nearest
/// ancestor with one).
fn event_trace_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<TraceId>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?
        .find_map(|span| {
            span.extensions()
                .get::<OtelData>()
                .and_then(OtelData::trace_id)
        })
        .filter(|id| *id != TraceId::INVALID)
}

/// Wraps a log line format to add the current `trace_id`.
struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let Some(trace_id) = event_trace_id(ctx) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            match line.strip_prefix('{') {
                Some(rest) if !rest.starts_with('}') => {
                    write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}")
                }
                _ => writer.write_str(&line),
            }
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} trace_id={trace_id}")
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

fn http_metrics() -> &'static HttpMetrics {
    static METRICS: OnceLock<HttpMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        fn histogram() -> Histogram {
            // 1 ms .. ~8 s.
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        }
        let m = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram),
        };
        orderflow_events::metrics::register(|r| {
            r.register(
                "orderflow_http_requests",
                "HTTP requests answered, by method, matched route and status",
                m.requests.clone(),
            );
            r.register(
                "orderflow_http_request_duration_seconds",
                "HTTP request duration by method and matched route",
                m.duration.clone(),
            );
        });
        m
    })
}

/// The trace context an HTTP-originated event continues: the request's
/// `traceparent` (and `tracestate`) when valid, else a new trace. (When the
/// OpenTelemetry layer is active the outbox records the current span's
/// context instead, which the HTTP middleware parents the same way.)
pub fn request_trace(headers: &HeaderMap) -> TraceContext {
    TraceContext::extract_from(&HttpHeaders(headers)).unwrap_or_else(TraceContext::new_root)
}

/// HTTP request headers as a carrier the trace-context propagator reads.
struct HttpHeaders<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Registers the HTTP metrics (so they show before the first request).
pub fn register_http_metrics() {
    http_metrics();
}

/// Paths that are polled by machines: counted, not traced.
fn is_probe(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

/// Middleware: a server span per request (child of an incoming
/// `traceparent`) and the HTTP metrics, by matched route (`unmatched` for
/// unknown paths, so the label stays bounded).
pub async fn observe_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let span = if is_probe(req.uri().path()) {
        tracing::Span::none()
    } else {
        let name = match &route {
            Some(r) => format!("{method} {r}"),
            None => method.clone(),
        };
        let span = tracing::info_span!(
            "request",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = route.as_deref(),
            url.path = req.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(parent) = TraceContext::extract_from(&HttpHeaders(req.headers())) {
            parent.set_as_parent_of(&span);
        }
        span
    };
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let m = http_metrics();
    m.duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

/// The `method` label of a request: one of the standard methods, or
/// `_OTHER` (as OpenTelemetry's HTTP conventions name it), so that a client
/// sending arbitrary methods cannot create unbounded label values.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use orderflow_events::trace_context::TRACEPARENT;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for custom in ["FOOBAR", "BREW", "X-1"] {
            let m = Method::from_bytes(custom.as_bytes()).expect("method");
            assert_eq!(method_label(&m), "_OTHER", "{custom}");
        }
    }

    #[test]
    fn a_request_continues_a_valid_traceparent_and_starts_a_trace_otherwise() {
        let mut headers = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT, tp.parse().expect("header"));
        assert_eq!(request_trace(&headers).traceparent(), tp);
        headers.insert(TRACEPARENT, "garbage".parse().expect("header"));
        let fresh = request_trace(&headers);
        assert_ne!(fresh.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(fresh.trace_id.len(), 32);
    }

    /// A log sink for tests.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("sink")).into_owned()
        }
    }

    /// Runs `f` under a subscriber like [`init`]'s (no export), returning
    /// the log output.
    fn capture(json: bool, f: impl FnOnce()) -> String {
        let provider = SdkTracerProvider::builder().build();
        let sink = Sink::default();
        let writer = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(LevelFilter::INFO);
        let fmt = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(writer)
                .map_event_format(|inner| WithTraceId { inner, json: true })
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .event_format(WithTraceId {
                    inner: tracing_subscriber::fmt::format().with_ansi(false),
                    json: false,
                })
                .boxed()
        };
        let subscriber = tracing_subscriber::registry().with(otel).with(fmt);
        tracing::subscriber::with_default(subscriber, f);
        sink.text()
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced_work() -> TraceContext {
        let parent = TraceContext::parse(PARENT, None).expect("valid");
        let span = tracing::info_span!("work", otel.kind = "consumer");
        parent.set_as_parent_of(&span);
        let _entered = span.enter();
        tracing::info!(answer = 42, "inside");
        let current = TraceContext::current().expect("an OpenTelemetry context");
        // A span the OpenTelemetry layer filters out (debug) inherits it.
        let inner = tracing::debug_span!("detail");
        assert_eq!(inner.in_scope(TraceContext::current), Some(current.clone()));
        current
    }

    #[test]
    fn text_lines_inside_a_span_carry_its_trace_id() {
        let mut current = None;
        let out = capture(false, || {
            tracing::info!("outside");
            current = Some(traced_work());
        });
        let current = current.expect("ran");
        // The span continues the parent's trace with a span id of its own.
        assert_eq!(current.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(current.span_id, "00f067aa0ba902b7");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(!lines[0].contains("trace_id"), "{out}");
        assert!(
            lines[1].ends_with("answer=42 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"),
            "{out}"
        );
    }

    #[test]
    fn json_lines_inside_a_span_carry_its_trace_id() {
        let out = capture(true, || {
            traced_work();
        });
        let line: serde_json::Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{out}"
        );
        assert_eq!(line["message"], "inside", "{out}");
        assert_eq!(line["answer"], 42, "{out}");
    }
}

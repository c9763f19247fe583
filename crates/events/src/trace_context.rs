//! W3C Trace Context (`traceparent`, `tracestate`) carried in Kafka headers
//! and in outbox rows, so one trace can span a whole saga.
//!
//! Format: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
//! Parsing and formatting are the OpenTelemetry SDK's
//! [`TraceContextPropagator`]; this module gives it Kafka headers as a
//! carrier ([`KafkaHeaders`], [`KafkaHeadersMut`]) and keeps a context as
//! plain data ([`TraceContext`]) for the outbox, which stores it with the
//! event until the relay publishes it.
//!
//! When the process has an OpenTelemetry layer (`tracing-opentelemetry`,
//! installed by the service runtime), trace contexts come from the real
//! spans: [`TraceContext::current`] is the current span's context, the
//! outbox stores it ([`outbox::enqueue`](crate::outbox::enqueue)), the relay
//! and the consumer make their spans children of the stored and received
//! contexts ([`TraceContext::set_as_parent_of`]). Without such a layer the
//! ids are still generated and propagated as before, only no spans exist.

use std::fmt;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use serde::{Deserialize, Serialize};

/// Header name of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the W3C `tracestate`.
pub const TRACESTATE: &str = "tracestate";

/// A W3C trace context: which trace, which parent span, sampling flags and
/// vendor state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 16-byte trace id as 32 lowercase hex digits.
    pub trace_id: String,
    /// 8-byte parent span id as 16 lowercase hex digits.
    pub span_id: String,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// Vendor-specific `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A new sampled trace with a random trace id and span id.
    pub fn new_root() -> Self {
        let ids = RandomIdGenerator::default();
        Self {
            trace_id: ids.new_trace_id().to_string(),
            span_id: ids.new_span_id().to_string(),
            flags: TraceFlags::SAMPLED.to_u8(),
            tracestate: None,
        }
    }

    /// The same trace with a new span id: the context a child span passes on.
    pub fn child(&self) -> Self {
        Self {
            span_id: RandomIdGenerator::default().new_span_id().to_string(),
            ..self.clone()
        }
    }

    /// Reads a valid trace context from any carrier (HTTP or Kafka
    /// headers, a map); `None` for anything the W3C spec says to ignore.
    pub fn extract_from(carrier: &dyn Extractor) -> Option<Self> {
        let cx = TraceContextPropagator::new().extract(carrier);
        Self::from_span_context(cx.span().span_context())
    }

    /// Writes `traceparent` (and `tracestate`) into any carrier.
    pub fn inject_into(&self, carrier: &mut dyn Injector) {
        if let Some(cx) = self.to_otel_context() {
            TraceContextPropagator::new().inject_context(&cx, carrier);
        }
    }

    /// Parses a `traceparent` value (and optional `tracestate`). Returns
    /// `None` for anything the W3C spec says to ignore.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        Self::extract_from(&Pair {
            traceparent,
            tracestate,
        })
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        let mut carrier = Collected::default();
        self.inject_into(&mut carrier);
        carrier.take(TRACEPARENT).unwrap_or_default()
    }

    /// Adds `traceparent` (and `tracestate`) to `headers`.
    pub fn inject(&self, headers: OwnedHeaders) -> OwnedHeaders {
        let mut carrier = KafkaHeadersMut(Some(headers));
        self.inject_into(&mut carrier);
        carrier.0.unwrap_or_default()
    }

    /// Reads the trace context from Kafka headers, if present and valid.
    pub fn extract<H: Headers>(headers: &H) -> Option<Self> {
        Self::extract_from(&KafkaHeaders(headers))
    }
}

/// Kafka headers as a carrier the propagator reads (UTF-8 values only).
pub struct KafkaHeaders<'a, H: Headers>(pub &'a H);

impl<H: Headers> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        // Of a repeated header, the last one counts.
        self.0
            .iter()
            .filter(|h| h.key == key)
            .last()
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|h| h.key).collect()
    }
}

/// Kafka headers being built, as a carrier the propagator writes.
pub struct KafkaHeadersMut(pub Option<OwnedHeaders>);

impl Injector for KafkaHeadersMut {
    fn set(&mut self, key: &str, value: String) {
        let headers = self.0.take().unwrap_or_default();
        self.0 = Some(headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        }));
    }
}

/// A `traceparent` and `tracestate` pair as a carrier.
struct Pair<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// What the propagator wrote, by header name.
#[derive(Default)]
struct Collected(Vec<(String, String)>);

impl Collected {
    fn take(self, key: &str) -> Option<String> {
        self.0.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl Injector for Collected {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

impl TraceContext {
    /// The context of an OpenTelemetry span, if valid.
    pub fn from_span_context(sc: &SpanContext) -> Option<Self> {
        if !sc.is_valid() {
            return None;
        }
        let tracestate = sc.trace_state().header();
        Some(Self {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
            flags: sc.trace_flags().to_u8(),
            tracestate: (!tracestate.is_empty()).then_some(tracestate),
        })
    }

    /// The context of the current `tracing` span when OpenTelemetry is
    /// active (the span is sampled or not, its ids are real); `None`
    /// otherwise.
    pub fn current() -> Option<Self> {
        Self::of_span(&tracing::Span::current()).or_else(|| {
            // The current span may be one the OpenTelemetry layer filters
            // out; the context it activated for the nearest span it knows
            // is still current.
            let cx = opentelemetry::Context::current();
            Self::from_span_context(cx.span().span_context())
        })
    }

    /// The context of `span` when OpenTelemetry is active.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if span.is_none() {
            return None;
        }
        let cx = span.context();
        Self::from_span_context(cx.span().span_context())
    }

    /// This context as a remote OpenTelemetry span context.
    pub fn to_span_context(&self) -> Option<SpanContext> {
        use opentelemetry::trace::{SpanId, TraceId};
        let trace_id = TraceId::from_hex(&self.trace_id).ok()?;
        let span_id = SpanId::from_hex(&self.span_id).ok()?;
        let state = self
            .tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(self.flags), true, state);
        sc.is_valid().then_some(sc)
    }

    /// This context as an OpenTelemetry parent context.
    pub fn to_otel_context(&self) -> Option<opentelemetry::Context> {
        self.to_span_context()
            .map(|sc| opentelemetry::Context::new().with_remote_span_context(sc))
    }

    /// Makes `span` (not yet entered) a child of this context. Does nothing
    /// without an OpenTelemetry layer or when the span is disabled.
    pub fn set_as_parent_of(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        if span.is_none() {
            return;
        }
        if let Some(cx) = self.to_otel_context() {
            if let Err(e) = span.set_parent(cx) {
                tracing::trace!(error = %e, "span parent not set");
            }
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_kafka_headers() {
        let mut ctx = TraceContext::new_root();
        ctx.tracestate = Some("vendor=1".into());
        let headers = ctx.inject(OwnedHeaders::new());
        assert_eq!(TraceContext::extract(&headers), Some(ctx.clone()));
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
    }

    #[test]
    fn converts_to_and_from_opentelemetry_span_contexts() {
        let mut ctx = TraceContext::new_root();
        ctx.tracestate = Some("vendor=1".into());
        let sc = ctx.to_span_context().expect("valid");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(TraceContext::from_span_context(&sc), Some(ctx));
        assert_eq!(
            TraceContext::from_span_context(&SpanContext::empty_context()),
            None
        );
        // Without an OpenTelemetry layer there is no current context.
        let span = tracing::info_span!("no-otel");
        assert_eq!(span.in_scope(TraceContext::current), None);
    }

    #[test]
    fn reads_the_last_of_repeated_kafka_headers_and_skips_bad_values() {
        let first = TraceContext::new_root();
        let last = TraceContext::new_root();
        let headers = last.inject(first.inject(OwnedHeaders::new()));
        assert_eq!(TraceContext::extract(&headers), Some(last));

        let not_utf8 = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(&[0xff, 0xfe][..]),
        });
        assert_eq!(TraceContext::extract(&not_utf8), None);
        assert_eq!(TraceContext::extract(&OwnedHeaders::new()), None);
    }

    #[test]
    fn parses_the_spec_example_and_rejects_invalid_values() {
        let ok = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .expect("valid");
        assert_eq!(ok.flags, 1);
        assert_eq!(
            ok.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
    }
}

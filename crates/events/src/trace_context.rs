//! W3C Trace Context (`traceparent`, `tracestate`) carried in Kafka headers
//! and in outbox rows, so one trace can span a whole saga.
//!
//! Format: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.

use std::fmt;

use rand::RngCore;
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
    /// Vendor-specific `tracestate`, passed through unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A new sampled trace with a random trace id and span id.
    pub fn new_root() -> Self {
        let mut rng = rand::thread_rng();
        let mut trace = [0u8; 16];
        let mut span = [0u8; 8];
        rng.fill_bytes(&mut trace);
        rng.fill_bytes(&mut span);
        Self {
            trace_id: hex(&trace),
            span_id: hex(&span),
            flags: 1,
            tracestate: None,
        }
    }

    /// The same trace with a new span id: the context a child span passes on.
    pub fn child(&self) -> Self {
        let mut span = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut span);
        Self {
            span_id: hex(&span),
            ..self.clone()
        }
    }

    /// Parses a `traceparent` value (and optional `tracestate`). Returns
    /// `None` for anything the W3C spec says to ignore.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let valid_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !valid_hex(version, 2)
            || version == "ff"
            || !valid_hex(trace_id, 32)
            || !valid_hex(span_id, 16)
        {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0')
            || span_id.bytes().all(|b| b == b'0')
            || !valid_hex(flags, 2)
        {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
            tracestate: tracestate.map(str::to_owned).filter(|s| !s.is_empty()),
        })
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// Adds `traceparent` (and `tracestate`) to `headers`.
    pub fn inject(&self, headers: OwnedHeaders) -> OwnedHeaders {
        let tp = self.traceparent();
        let headers = headers.insert(Header {
            key: TRACEPARENT,
            value: Some(tp.as_bytes()),
        });
        match &self.tracestate {
            Some(ts) => headers.insert(Header {
                key: TRACESTATE,
                value: Some(ts.as_bytes()),
            }),
            None => headers,
        }
    }

    /// Reads the trace context from Kafka headers, if present and valid.
    pub fn extract<H: Headers>(headers: &H) -> Option<Self> {
        let mut traceparent = None;
        let mut tracestate = None;
        for h in headers.iter() {
            let value = h.value.and_then(|v| std::str::from_utf8(v).ok());
            match h.key {
                TRACEPARENT => traceparent = value,
                TRACESTATE => tracestate = value,
                _ => {}
            }
        }
        Self::parse(traceparent?, tracestate)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

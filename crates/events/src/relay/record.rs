//! One outgoing record: its producer span (a child of the trace context
//! stored with the row), its headers, and what its delivery report means.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::DeliveryFuture;

use super::pipeline::Prepared;
use crate::envelope::Envelope;
use crate::kafka::OutgoingRecord;
use crate::trace_context::TraceContext;

/// The producer span of one record (a child of the row's stored trace
/// context) and the record, whose trace headers carry the span's context.
pub(super) fn publish_span(key: &str, p: &Prepared) -> (tracing::Span, OutgoingRecord) {
    let span = tracing::info_span!(
        "publish",
        otel.name = format!("publish {}", p.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "publish",
        messaging.destination.name = %p.topic,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.message.key = %key,
        messaging.kafka.offset = tracing::field::Empty,
        messaging.message.id = %p.envelope.event_id,
        event_type = p.envelope.event_type().name(),
        correlation_id = %p.envelope.correlation_id,
    );
    if let Some(t) = &p.trace {
        t.set_as_parent_of(&span);
    }
    let trace = TraceContext::of_span(&span).or_else(|| p.trace.clone());
    let record = OutgoingRecord {
        topic: p.topic.clone(),
        key: key.to_owned(),
        payload: p.payload.clone(),
        headers: record_headers(&p.envelope, trace.as_ref()),
    };
    (span, record)
}

/// Waits for the broker's answer; `(partition, offset)` on success.
/// Cancel-safe: the future is only borrowed.
pub(super) async fn delivered(f: &mut DeliveryFuture) -> Result<(i32, i64), String> {
    match f.await {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(e.to_string()),
        Err(_) => Err("delivery canceled".to_owned()),
    }
}

/// The Kafka headers of a published event: trace context plus the envelope
/// fields consumers most often filter on, so they need not decode to route.
pub fn record_headers(
    envelope: &Envelope,
    trace: Option<&crate::trace_context::TraceContext>,
) -> OwnedHeaders {
    let event_id = envelope.event_id.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "eventType",
            value: Some(envelope.event_type().name()),
        })
        .insert(Header {
            key: "eventId",
            value: Some(&event_id),
        })
        .insert(Header {
            key: "correlationId",
            value: Some(&envelope.correlation_id),
        });
    match trace {
        Some(t) => t.inject(headers),
        None => headers,
    }
}

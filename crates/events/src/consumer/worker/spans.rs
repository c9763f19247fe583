//! The consumer span of each record (OpenTelemetry messaging conventions),
//! a child of the producer span its `traceparent` header names.

use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::metrics;
use crate::trace_context::TraceContext;

/// `msg` with its consumer span, whose parent is the producer span named by
/// the record's `traceparent`. Called when the lane takes the record up, so
/// it also records how long the record took to get here.
pub(super) fn with_span(group_id: &str, msg: OwnedMessage) -> (OwnedMessage, tracing::Span) {
    if let Some(waited) = super::record_age(&msg) {
        metrics::pipeline().consumer_delay(group_id, msg.topic(), waited);
    }
    let redriven = msg.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == crate::dead_letters::REDRIVEN_FROM)
    });
    if redriven {
        metrics::pipeline().redriven(group_id, msg.topic());
    }
    let span = process_span(group_id, &msg);
    if let Some(parent) = msg.headers().and_then(TraceContext::extract) {
        parent.set_as_parent_of(&span);
    }
    (msg, span)
}

/// The consumer span of one record (OpenTelemetry messaging conventions);
/// its parent is set from the record's `traceparent` header.
fn process_span(group_id: &str, msg: &OwnedMessage) -> tracing::Span {
    let key = msg.key().map(String::from_utf8_lossy);
    tracing::info_span!(
        "process",
        otel.name = format!("process {}", msg.topic()),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = msg.topic(),
        messaging.destination.partition.id = msg.partition(),
        messaging.kafka.offset = msg.offset(),
        messaging.kafka.message.key = key.as_deref(),
        messaging.consumer.group.name = %group_id,
        messaging.message.id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

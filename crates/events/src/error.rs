//! Error types of this crate. Each says whether retrying can help, because
//! that decides between "retry with backoff" and "dead-letter it".

use thiserror::Error;

/// A configuration value is missing or invalid.
#[derive(Debug, Error)]
#[error("invalid configuration {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or setting) at fault.
    pub var: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `var`.
    pub fn invalid(var: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Talking to the schema registry failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The registry could not be reached or answered 5xx: worth retrying.
    #[error("schema registry unavailable at {url}: {message}")]
    Unavailable {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The registry answered with a 4xx error: retrying will not help.
    #[error("schema registry rejected {url}: HTTP {status}, error_code {error_code}: {message}")]
    Rejected {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: u16,
        /// Confluent error code (e.g. 40403 schema not found).
        error_code: i64,
        /// The registry's message.
        message: String,
    },
}

impl RegistryError {
    /// True when retrying later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unavailable { .. })
    }

    /// The Confluent error code, if the registry answered with one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            RegistryError::Rejected { error_code, .. } => Some(*error_code),
            RegistryError::Unavailable { .. } => None,
        }
    }
}

/// Encoding or decoding an event failed.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The bytes are not in Confluent wire format (magic byte 0 + schema id).
    #[error("not Confluent Avro wire format: {0}")]
    NotWireFormat(String),
    /// The schema id is unknown to the registry.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A schema (ours or the registry's) could not be parsed.
    #[error("invalid schema {context}: {source}")]
    Schema {
        /// Which schema.
        context: String,
        /// Parser error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The writer's record type is not an event this build knows.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The Avro body does not match its schema, or does not resolve to ours.
    #[error("avro {context}: {source}")]
    Avro {
        /// What was being done.
        context: String,
        /// Avro error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The envelope decoded but a field is invalid (e.g. a malformed UUID).
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(String),
    /// JSON (outbox storage) could not be (de)serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl CodecError {
    /// True when retrying later can succeed (only registry outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::Registry(e) if e.is_transient())
    }

    /// A short machine-readable reason, used in dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::NotWireFormat(_) => "not-wire-format",
            CodecError::UnknownSchemaId(_) => "unknown-schema-id",
            CodecError::Registry(_) => "registry-error",
            CodecError::Schema { .. } => "invalid-schema",
            CodecError::UnknownEventType(_) => "unknown-event-type",
            CodecError::Avro { .. } => "undecodable",
            CodecError::InvalidEnvelope(_) => "invalid-envelope",
            CodecError::Json(_) => "invalid-json",
        }
    }
}

/// Writing to the outbox failed.
#[derive(Debug, Error)]
pub enum OutboxError {
    /// The event could not be serialised.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The database failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a handler reports when it cannot apply an event.
#[derive(Debug, Error)]
pub enum HandlerError {
    /// Try again after a backoff; after the retry budget is spent the event
    /// is dead-lettered.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The event can never be applied (e.g. it violates an invariant): it is
    /// dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Infrastructure is down (database, SMTP server, ... unreachable): retried
    /// with backoff for as long as it takes, never dead-lettered.
    #[error("infrastructure: {0}")]
    Infrastructure(String),
}

impl HandlerError {
    /// A retryable error with a message.
    pub fn retryable(msg: impl Into<String>) -> Self {
        HandlerError::Retryable(msg.into())
    }

    /// A permanent error with a message.
    pub fn permanent(msg: impl Into<String>) -> Self {
        HandlerError::Permanent(msg.into())
    }

    /// An infrastructure error with a message.
    pub fn infrastructure(msg: impl Into<String>) -> Self {
        HandlerError::Infrastructure(msg.into())
    }

    /// The failure of a statement that applies a batch of `len` records at
    /// once, as [`Handler::handle_batch`](crate::consumer::Handler::handle_batch)
    /// reports it: named on record 0. Which record is at fault is unknown, so
    /// when there are several a permanent error becomes retryable: record 0
    /// is then tried alone (and dead-lettered only if it fails on its own),
    /// and the others follow in later transactions.
    pub fn batch_failure(len: usize, e: impl Into<HandlerError>) -> (usize, HandlerError) {
        let e = match e.into() {
            HandlerError::Permanent(m) if len > 1 => HandlerError::Retryable(format!(
                "a batch of {len} records failed, so they are applied alone: {m}"
            )),
            e => e,
        };
        (0, e)
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => HandlerError::Infrastructure(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // The server is shutting down, restarting or out of
                // connections (admin / crash shutdown, cannot connect now,
                // class 08 connection exceptions, too many connections): not
                // the event's fault, so it must not count towards
                // dead-lettering however long the restart takes.
                Some("57P01" | "57P02" | "57P03" | "53300") => {
                    HandlerError::Infrastructure(e.to_string())
                }
                Some(c) if c.starts_with("08") => HandlerError::Infrastructure(e.to_string()),
                // serialization_failure, deadlock_detected, lock_not_available.
                Some("40001" | "40P01" | "55P03") => HandlerError::Retryable(e.to_string()),
                _ => HandlerError::Permanent(e.to_string()),
            },
            _ => HandlerError::Retryable(e.to_string()),
        }
    }
}

/// The relay or a consumer stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// Kafka client setup failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The database failed in a way that cannot be retried.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A test hook stopped the relay at a chosen point (tests only).
    #[error("simulated crash at {0}")]
    SimulatedCrash(&'static str),
    /// A partition worker died (a handler panicked). Its record was not
    /// acknowledged; the consumer stops so the service fails loudly and a
    /// restart redelivers the record.
    #[error("partition worker for {0} stopped unexpectedly (handler panic?)")]
    WorkerDied(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_failure_names_record_0_and_retries_a_batch_alone() {
        let (at, e) = HandlerError::batch_failure(3, HandlerError::permanent("bad"));
        assert_eq!(at, 0);
        assert!(matches!(e, HandlerError::Retryable(m) if m.contains("bad")));
        // A record on its own is at fault.
        let (_, e) = HandlerError::batch_failure(1, HandlerError::permanent("bad"));
        assert!(matches!(e, HandlerError::Permanent(_)));
        let (_, e) = HandlerError::batch_failure(3, HandlerError::infrastructure("down"));
        assert!(matches!(e, HandlerError::Infrastructure(_)));
    }
}

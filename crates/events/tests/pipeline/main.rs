//! Integration tests of the event pipeline against real infrastructure:
//! PostgreSQL, a Kafka-protocol broker (nisshi locally) and the schema
//! registry, addressed through `ORDERFLOW_TEST_DATABASE_URL`,
//! `KAFKA_BOOTSTRAP_SERVERS` and `SCHEMA_REGISTRY_URL` (`scripts/test` starts
//! them). The broker-outage test runs a broker of its own (`BROKER_BIN`).
//!
//! Every test uses a fresh database, unique topics and a unique consumer
//! group, so the tests run in parallel.

#![allow(missing_docs)]

mod batching;
mod broker_outage;
mod broker_wake;
mod dlq_tail;
mod duplicates;
mod helpers;
mod inbox_prune;
mod lanes;
mod offsets;
mod outbox_failed;
mod own_broker;
mod poison;
mod relay_crash;
mod relay_pipeline;
mod retention;
mod round_trip;
mod shared_workers;

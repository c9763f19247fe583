//! Cross-service end-to-end suite for orderflow; the tests live in `tests/`.
//!
//! This library is the harness they share: [`Stack::start`] brings up a
//! fully isolated copy of the system for one test with the stack library
//! (`crates/stack`, which `orderctl bench run` uses too) — five fresh
//! databases (`<id>_<service>`), its own Kafka topics (prefix `<id>.`,
//! created and provisioned with the real `orderctl`), a real SMTP listener
//! (aiosmtpd writing a Maildir) and the five service binaries as child
//! processes on free ports — and adds HTTP client helpers, condition
//! polling with deadlines, database access and the e-mails received.
//!
//! Environment (all optional; `scripts/test` exports them):
//!
//! | variable | default |
//! |---|---|
//! | `ORDERFLOW_TEST_DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/postgres` (admin URL) |
//! | `KAFKA_BOOTSTRAP_SERVERS` | `127.0.0.1:19092` |
//! | `SCHEMA_REGISTRY_URL` | `http://127.0.0.1:18081` |
//! | `ORDERFLOW_BIN_DIR` | the directory of the test executable's profile (`target/<profile>`) |
//! | `ORDERFLOW_PYTHON` | required: a python with `aiosmtpd` and `confluent_kafka` |
//! | `ORDERFLOW_E2E_TIMEOUT_SECS` | `90`: deadline of one saga wait |
//! | `ORDERFLOW_E2E_PARTITIONS` | unset: the real partition counts; a number overrides every topic's |
//! | `ORDERFLOW_E2E_RUST_LOG` | `info`: `RUST_LOG` of the services |
//! | `BROKER_BIN` | `~/.cache/orderflow/broker/nisshi`: the broker of stacks with one of their own ([`StackOptions::own_broker`]) |
//!
//! Run: `scripts/test -E 'package(orderflow-e2e)'` (starts the
//! infrastructure, builds the binaries), or against running infrastructure
//! `cargo build --bins && cargo nextest run -p orderflow-e2e` with the
//! variables above exported. `.config/nextest.toml` runs at most two stack
//! tests at once.
//!
//! Service logs go to `$CARGO_TARGET_DIR/e2e-logs/<id>/<service>.log`
//! (printed when a stack starts and in every timeout message).

pub mod body;
pub mod chaos;
pub mod client;
pub mod env;
pub mod mail;
pub mod stack;

pub use orderflow_stack::wait;

pub use body::OrderBody;
pub use client::{OrderJson, Resp, Status, TimelineEventJson, TERMINAL};
pub use mail::Mail;
pub use orderflow_stack::Stop;
pub use stack::{Service, Smtp, Stack, StackOptions};
pub use wait::{eventually, poll_until};

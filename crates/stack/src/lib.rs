//! One orderflow stack as child processes, for the end-to-end tests
//! (`tests/`, whose harness wraps [`Stack`] with its HTTP helpers) and for
//! `orderctl bench run`.
//!
//! [`Stack::start`] brings up a fully isolated copy of the system: five
//! fresh databases (`<id>_<service>`, each granted to the service's
//! least-privilege roles), its own Kafka topics (prefix `<id>.`, created
//! and provisioned with the real `orderctl`), a real SMTP listener writing
//! a Maildir (aiosmtpd, or `orderctl smtp-sink`) and the five service
//! binaries on free ports, and waits until every one is ready. On request
//! it also runs a broker, a PostgreSQL server and a schema registry of its
//! own, so that a test can stop and restart them. Dropping it stops every
//! process it started (SIGTERM, SIGKILL after 10 s), through a watchdog
//! that also acts when the owning process dies.
//!
//! [`check`] reads a settled stack's five databases, topics and Maildir
//! and says which promise of the saga is broken: the one checker of the
//! fault campaign, the concurrency test and the benchmark.
//!
//! `scripts/lib.sh` keeps what is installing and starting the shared
//! infrastructure (PostgreSQL, the broker, the registry); everything a
//! stack of services is made of is started here.
//!
//! Environment (all optional; `scripts/test` and `scripts/bench` export
//! them):
//!
//! | variable | default |
//! |---|---|
//! | `ORDERFLOW_TEST_DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable` (admin URL) |
//! | `KAFKA_BOOTSTRAP_SERVERS` | `127.0.0.1:19092` |
//! | `SCHEMA_REGISTRY_URL` | `http://127.0.0.1:18081` (as a user who may register) |
//! | `ORDERFLOW_SERVICES_REGISTRY_URL` | unset: the registry as the services' read-only user |
//! | `ORDERFLOW_BIN_DIR` | the directory of the running executable's profile (`target/<profile>`) |
//! | `ORDERFLOW_PYTHON` | a python with `aiosmtpd` (the default SMTP listener) |
//! | `ORDERFLOW_E2E_PARTITIONS` | unset: the real partition counts; a number overrides every topic's |
//! | `ORDERFLOW_E2E_RUST_LOG` | `info`: `RUST_LOG` of the services |
//! | `BROKER_BIN` | `~/.cache/orderflow/broker/nisshi`: the broker of stacks with one of their own |

pub mod check;
pub mod env;
mod ports;
mod process;
pub mod stack;
pub mod wait;

pub use ports::free_ports;
pub use process::{tail, Stop};
pub use stack::{Helper, Service, Smtp, Stack, StackOptions};
pub use wait::{eventually, poll_until};

//! Integration tests: the real registry over HTTP against real PostgreSQL,
//! one fresh database per test.

mod auth;
mod binary;
mod compatibility;
mod config;
mod deletion;
mod helpers;
mod http;
mod registration;
mod versions;

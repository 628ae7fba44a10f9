//! End-to-end tests: each starts the real `eddy` binary on port 0 and a temp data dir and
//! talks to it over HTTP, the way a user would. One test binary with modules keeps link time
//! down.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod admin;
mod alerts;
mod analytics;
mod auth_matrix;
mod client;
mod common;
mod contract;
mod crash;
mod dashboard;
mod fuzz;
mod golden;
mod grpc;
mod ingest;
mod live;
mod loadgen;
mod ops;
mod query;
mod sql;
mod stream;
mod third_party;
mod ws;

//! The one integration-test binary: the simulator and the real exporter on loopback.

#![allow(clippy::unwrap_used)]

mod bounds;
mod check;
mod compat;
mod config;
mod dashboard;
mod deploy;
mod failures;
mod golden;
mod harness;
mod http;
mod labels;
mod multi;
mod naming;
mod operators;
mod prometheus;
mod scrape;
mod secrets;
mod state;
mod status;
mod tidy;
mod tls;
mod vm_rrd;
mod web;

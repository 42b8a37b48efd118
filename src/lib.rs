//! xen-exporter: a Prometheus exporter for XCP-ng and Citrix XenServer pools.
//!
//! # Layout
//!
//! The modules are the stages of the pipeline, in data-flow order:
//!
//! - [`config`]: command line and `XEN_*` environment → a validated [`config::Config`].
//! - [`xapi`]: talks to one pool over JSON-RPC and `/rrd_updates`; knows nothing of Prometheus.
//! - [`inventory`]: the names of hosts, VMs and SRs, held between scrapes.
//! - [`collect`]: one scrape: fan out to hosts, join RRD rows with names, produce families.
//!   The only module that knows both XAPI and Prometheus.
//! - [`metrics`]: the metric model, catalog and encoders; pure and synchronous.
//! - [`server`]: HTTP endpoints; never sees XAPI wire data.
//! - [`sim`]: a simulated XAPI pool for tests, benchmarks and `--demo`; shares no types with
//!   [`xapi`].

pub mod metrics;
pub mod sim;
pub mod xapi;

//! xen-exporter: a Prometheus exporter for XCP-ng and Citrix XenServer pools.
//!
//! # Layout
//!
//! The modules are the stages of the pipeline, in data-flow order:
//!
//! - [`config`]: command line and `XEN_*` environment → a validated [`config::Config`].
//! - [`xapi`]: talks to one pool over JSON-RPC and `/rrd_updates`; knows nothing of Prometheus.
//! - [`inventory`]: names and state of hosts, VMs, SRs, PBDs, kept live by `event.from`.
//! - [`collect`]: one scrape: fan out to hosts, join RRD rows with names, produce families.
//!   The only module that knows both XAPI and Prometheus.
//! - [`metrics`]: the metric model, catalog and encoders; pure and synchronous.
//! - [`server`]: HTTP endpoints; never sees XAPI wire data.
//! - [`sim`]: a simulated XAPI pool for tests, benchmarks and `--demo`; shares no types with
//!   [`xapi`].
//!
//! [`run`] wires one pool to an HTTP listener and [`check::check`] tests a configuration
//! against the pool; `main.rs` only parses the configuration and calls one of them.

pub mod check;
pub mod collect;
pub mod config;
pub mod inventory;
pub mod metrics;
pub mod server;
pub mod sim;
pub mod xapi;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Collectors, Endpoint, Mode, PoolConfig, Secret, TlsConfig};

/// How long shutdown waits for the XAPI logout.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Exports the pool described by `pool` on `listener` until `shutdown` completes, then logs
/// out of XAPI. The first login and inventory read start at once in the background, retried
/// with back-off, so that `/-/ready` turns ready as soon as the pool answers; the inventory
/// then follows XAPI's event stream.
pub async fn run(
    pool: PoolConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let description = format!(
        "Exporting {} in {} mode.",
        pool.endpoint,
        match pool.mode {
            Mode::Host => "host",
            Mode::Pool => "pool",
        }
    );
    let pool = Arc::new(collect::Pool::new(&pool).map_err(std::io::Error::other)?);
    let inventory = tokio::spawn({
        let pool = pool.clone();
        async move { pool.follow_inventory().await }
    });
    let state = server::State::new(pool.clone(), &description);
    let served = server::serve(listener, server::router(state), shutdown).await;
    inventory.abort();
    if tokio::time::timeout(LOGOUT_TIMEOUT, pool.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("XAPI logout timed out");
    }
    served
}

/// The pool configuration that exports a running simulator: its master, credentials and CA.
/// Used by `--demo`, the integration tests and the benchmarks.
pub fn simulator_pool(sim: &sim::Sim, mode: Mode, timeout: Duration) -> PoolConfig {
    PoolConfig {
        endpoint: Endpoint::parse(&sim.master_url())
            .expect("the simulator's URL is a valid endpoint"),
        user: sim.username().to_string(),
        password: Secret::new(sim.password()),
        tls: TlsConfig {
            verify: true,
            extra_roots_pem: Some(sim.ca_pem().into_bytes()),
            ..TlsConfig::default()
        },
        mode,
        halt_on_no_uuid: false,
        timeout,
        collectors: Collectors::default(),
        hash_uuids_key: None,
    }
}

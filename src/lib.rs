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
//!
//! The simulated XAPI pool behind the tests, benchmarks and `--demo` is a separate crate,
//! `xapi-sim`, sharing no types with [`xapi`]; `demo` (built with the `demo` feature, on by
//! default) is the one module that uses it.
//!
//! [`run_pools`] wires pools to an HTTP listener with its protection and limits ([`run_with`]
//! and [`run`]: one pool), and [`check::check`] tests a configuration against the pool;
//! `main.rs` only parses the configuration and calls one of them.

pub mod check;
pub mod collect;
pub mod config;
pub mod inventory;
pub mod metrics;
pub mod server;
pub mod xapi;

#[cfg(feature = "demo")]
pub mod demo;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use crate::config::WebOptions;
use crate::config::{Mode, PoolConfig};

/// How long shutdown waits for the XAPI logout.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// Exports the pool described by `pool` on `listener` until `shutdown` completes, then logs
/// out of XAPI, with the default [`WebOptions`]: plain HTTP, no authentication, the default
/// limits. See [`run_with`].
pub async fn run(
    pool: PoolConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(pool, listener, WebOptions::default(), shutdown).await
}

/// Exports the pool described by `pool` on `listener`, protected and bounded by `web`, until
/// `shutdown` completes, then logs out of XAPI: the environment-variable setup, where
/// `/metrics` is the pool. See [`run_pools`].
pub async fn run_with(
    pool: PoolConfig,
    listener: TcpListener,
    web: WebOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_pools(Pools::single(pool), listener, web, shutdown).await
}

/// What a process exports.
#[derive(Debug, Clone)]
pub struct Pools {
    /// The pools, in configuration order.
    pub configs: Vec<PoolConfig>,
    /// How `/metrics` and `/probe` map to them.
    pub exposure: server::Exposure,
    /// Most `/rrd_updates` fetches in flight across every pool (0: no limit).
    pub max_fetches: usize,
    /// Subtracted from Prometheus' scrape timeout for the collection deadline.
    pub timeout_offset: Duration,
}

impl Pools {
    /// The one pool of the environment-variable setup, exported on `/metrics`.
    pub fn single(pool: PoolConfig) -> Pools {
        Pools {
            configs: vec![pool],
            exposure: server::Exposure::MetricsIsThePool,
            max_fetches: DEFAULT_MAX_FETCHES,
            timeout_offset: server::DEFAULT_TIMEOUT_OFFSET,
        }
    }
}

/// Default cap on concurrent `/rrd_updates` fetches of the whole process.
pub const DEFAULT_MAX_FETCHES: usize = 64;

/// Exports `pools` on `listener`, protected and bounded by `web`, until `shutdown`
/// completes, then logs out of every pool. With [`server::Exposure::MetricsIsThePool`] the
/// first login and inventory read start at once in the background, retried with back-off,
/// so that `/-/ready` turns ready as soon as the pool answers; with a configuration file each
/// pool starts at its first probe, so that a replica that Prometheus never asks for a pool
/// (hashmod sharding) never logs in to it. An invalid web configuration file is an
/// `InvalidInput` error.
pub async fn run_pools(
    pools: Pools,
    listener: TcpListener,
    web: WebOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let web_config = match &web.config_file {
        None => server::web_config::WebConfig::default(),
        Some(path) => server::web_config::WebConfig::load(path).map_err(|why| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("web configuration {}: {why}", path.display()),
            )
        })?,
    };
    for warning in web_config.warnings() {
        tracing::warn!("Web configuration: {warning}");
    }
    if web.config_file.is_some() {
        tracing::info!(
            tls = web_config.tls_enabled(),
            "Web configuration loaded; changes to it and to the files it names apply to new connections"
        );
    }
    let longest = pools
        .configs
        .iter()
        .map(|p| p.timeout)
        .max()
        .unwrap_or(Duration::from_secs(8));
    let limits = server::listen::Limits {
        read_header_timeout: web.read_header_timeout,
        request_timeout: web.request_timeout_for(longest),
        max_requests: web.max_requests,
    };
    let description = match pools.exposure {
        server::Exposure::MetricsIsThePool => pools
            .configs
            .first()
            .map(|pool| {
                format!(
                    "Exporting {} in {} mode.",
                    pool.endpoint,
                    match pool.mode {
                        Mode::Host => "host",
                        Mode::Pool => "pool",
                    }
                )
            })
            .unwrap_or_default(),
        server::Exposure::ProbePerPool => format!(
            "Exporting {} pools: scrape /probe?target=<pool name>; /metrics has the exporter's own metrics.",
            pools.configs.len()
        ),
    };
    let fetch_limit =
        (pools.max_fetches > 0).then(|| Arc::new(tokio::sync::Semaphore::new(pools.max_fetches)));
    let mut started = Vec::with_capacity(pools.configs.len());
    for config in &pools.configs {
        let pool = collect::Pool::new(config, fetch_limit.clone())
            .map_err(|why| std::io::Error::other(format!("pool {}: {why}", config.name)))?;
        started.push(Arc::new(pool));
    }
    if pools.exposure == server::Exposure::MetricsIsThePool {
        for pool in &started {
            pool.start();
        }
    }
    let state = server::State::for_pools(
        started.clone(),
        pools.exposure,
        &description,
        web.scrape_min_interval,
        pools.timeout_offset,
    );
    let served = server::listen::serve(
        listener,
        server::router(state),
        web_config,
        web.config_file.clone(),
        limits,
        shutdown,
    )
    .await;
    let logouts = futures::future::join_all(started.iter().map(|pool| pool.shutdown()));
    if tokio::time::timeout(LOGOUT_TIMEOUT, logouts).await.is_err() {
        tracing::warn!("XAPI logout timed out");
    }
    served
}

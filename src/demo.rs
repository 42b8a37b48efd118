//! `--demo` and the tests' simulated pools: starts the simulator (the xapi-sim crate) and
//! turns a running one into the [`PoolConfig`] that exports it. Only built with the `demo`
//! feature; the rest of the exporter never sees the simulator.

use std::time::Duration;

use xapi_sim::{Sim, SimConfig};

use crate::config::{Collectors, Endpoint, Mode, Naming, PoolConfig, Secret, TlsConfig};

/// The pool configuration that exports a running simulator: its master, credentials and CA.
/// Used by `--demo`, the integration tests and the benchmarks.
pub fn simulator_pool(sim: &Sim, mode: Mode, timeout: Duration) -> PoolConfig {
    PoolConfig {
        name: "sim".into(),
        endpoint: Endpoint::parse(&sim.master_url())
            .expect("the simulator's URL is a valid endpoint"),
        members: Vec::new(),
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
        naming: Naming::default(),
        hash_uuids_key: None,
    }
}

/// The simulated pool that `--demo` exports, running until [`Demo::shutdown`].
#[derive(Debug)]
pub struct Demo {
    sim: Sim,
}

impl Demo {
    /// Starts the demo pool (3 hosts × 6 named guests) and returns the configuration that
    /// exports it in pool mode.
    pub async fn start() -> Result<(PoolConfig, Demo), String> {
        let sim = Sim::start(SimConfig::demo())
            .await
            .map_err(|e| e.to_string())?;
        let pool = simulator_pool(&sim, Mode::Pool, Duration::from_secs(8));
        Ok((pool, Demo { sim }))
    }

    /// Stops the simulator.
    pub async fn shutdown(self) {
        self.sim.shutdown().await;
    }
}

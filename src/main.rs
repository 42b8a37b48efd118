//! The `xen-exporter` binary: parse and validate the configuration (exit 64 on a bad one),
//! set up logging, start the simulator for `--demo`, then either bind the listener and hand
//! over to [`xen_exporter::run`], or for `check` run [`xen_exporter::check::check`] and print
//! its report (exit 1 when something the exporter needs fails). Nothing else lives here.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use xen_exporter::config::{Cli, Config, Env, PoolConfig, Scheme, TrustMode};
#[cfg(feature = "demo")]
use xen_exporter::demo::Demo;
use xen_exporter::server::web_config::WebConfig;

/// sysexits.h EX_USAGE: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;
/// sysexits.h EX_UNAVAILABLE: a resource (the listen address) is not available.
const EXIT_UNAVAILABLE: u8 = 69;
/// `check` found something the exporter needs that does not work.
const EXIT_CHECK_FAILED: u8 = 1;

/// jemalloc with one arena and no thread caches, freed pages returned after 300 ms by a
/// background thread (`.cargo/config.toml`): glibc's malloc, without a `MALLOC_ARENA_MAX`
/// that only the environment can set, keeps an arena per thread and the exporter's short-lived
/// buffers (bodies, response chunks) spread over them. Chosen by measurement; the figures are
/// in benches/README.md.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_cli(&cli, &Env::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("xen-exporter: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if config.demo && !cfg!(feature = "demo") {
        eprintln!("xen-exporter: invalid configuration: {NO_DEMO}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let filter = match EnvFilter::try_new(log_directives(&config.log_level)) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!(
                "xen-exporter: invalid configuration: XEN_LOG_LEVEL (--log.level) {:?}: {error}; use error, warn, info, debug or trace",
                config.log_level
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Checked here rather than in Config::from_cli: the format belongs to the server module,
    // which the configuration layer does not depend on.
    let web = match &config.web.config_file {
        None => None,
        Some(path) => match WebConfig::load(path) {
            Ok(web) => Some(web),
            Err(problem) => {
                eprintln!(
                    "xen-exporter: invalid configuration: XEN_WEB_CONFIG_FILE (--web.config.file) {}: {problem}",
                    path.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    if config.check_only {
        #[allow(clippy::print_stdout)]
        {
            print!("{}", config.summary());
            if let Some(web) = &web {
                print!("{}", web.summary());
            }
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xen-exporter: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if config.check_xapi {
        runtime.block_on(check(config))
    } else {
        runtime.block_on(serve(config))
    }
}

/// A bare level (`debug`) applies to the exporter; the HTTP and TLS libraries stay at `warn`
/// unless named explicitly (`debug,hyper=debug`), so that debug logs stay readable.
fn log_directives(level: &str) -> String {
    if level.contains('=') {
        level.to_string()
    } else {
        format!("warn,xen_exporter={level}")
    }
}

async fn serve(config: Config) -> ExitCode {
    let Some((pool, demo)) = configured_or_demo(&config).await else {
        return ExitCode::FAILURE;
    };
    let pools = match (&config.file_pools, &demo) {
        (Some(pools), None) => xen_exporter::Pools {
            configs: pools.clone(),
            exposure: xen_exporter::server::Exposure::ProbePerPool,
            max_fetches: config.max_fetches,
            timeout_offset: config.timeout_offset,
        },
        _ => xen_exporter::Pools {
            max_fetches: config.max_fetches,
            timeout_offset: config.timeout_offset,
            ..xen_exporter::Pools::single(pool.clone())
        },
    };
    for pool in &pools.configs {
        if pool.user == "root" && demo.is_none() && pool.tls.client_identity.is_none() {
            tracing::warn!(
                pool = %pool.name,
                "Logging in to XAPI as root; create a dedicated read-only account for monitoring and set XEN_USER (see README, 'A dedicated account')"
            );
        }
        announce_trust(pool);
    }
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        // The demo should just work for a newcomer whose node_exporter already holds 9100.
        Err(error) if demo.is_some() && error.kind() == std::io::ErrorKind::AddrInUse => {
            let fallback = std::net::SocketAddr::new(config.listen.ip(), 0);
            match TcpListener::bind(fallback).await {
                Ok(listener) => {
                    tracing::warn!(
                        port = config.listen.port(),
                        "Port in use; the demo listens on a free port instead"
                    );
                    listener
                }
                Err(error) => {
                    eprintln!("xen-exporter: cannot listen on {fallback} ({error})");
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
            }
        }
        Err(error) => {
            eprintln!(
                "xen-exporter: cannot listen on {} ({error}); choose another PORT (--web.port) or BIND (--web.bind)",
                config.listen
            );
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let address = listener.local_addr().unwrap_or(config.listen);
    match &config.file_pools {
        Some(file_pools) if demo.is_none() => tracing::info!(
            %address,
            pools = file_pools.len(),
            "Listening; pools at /probe?target=<name>, the exporter's own metrics at /metrics"
        ),
        _ => tracing::info!(%address, xen_host = %pool.endpoint, "Listening; metrics at /metrics"),
    }
    if config.web.config_file.is_none() && !config.listen.ip().is_loopback() {
        tracing::info!(
            "No --web.config.file: /metrics is plain HTTP without authentication; see README, 'Protecting /metrics'"
        );
    }
    if demo.is_some() {
        tracing::info!(
            "Demo: a simulated pool is running on loopback; open http://{}/metrics",
            demo_address(address)
        );
    }
    let result =
        xen_exporter::run_pools(pools, listener, config.web.clone(), shutdown_signal()).await;
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Server failed");
            ExitCode::FAILURE
        }
    }
}

/// Says at start-up how XAPI's certificates are checked, loudly when they are not.
fn announce_trust(pool: &PoolConfig) {
    let tls = &pool.tls;
    match tls.mode() {
        TrustMode::Off => tracing::warn!(
            "XEN_SSL_VERIFY=false: TLS certificates of the pool are NOT verified; anyone on the path can read the XAPI password and forge every metric. Use XEN_SSL_CA_FILE or XEN_SSL_FINGERPRINT instead (README, 'Trusting the pool's certificates')"
        ),
        TrustMode::CaFile => {
            if tls.fingerprint.is_some() {
                tracing::warn!(
                    "XEN_SSL_FINGERPRINT is ignored: XEN_SSL_CA_FILE is set and takes precedence"
                );
            }
            tracing::info!(
                mode = "ca_file",
                "TLS certificates of the pool are verified against XEN_SSL_CA_FILE and the system roots"
            );
        }
        TrustMode::Fingerprint => {
            if let Some(fingerprint) = tls.fingerprint {
                tracing::info!(mode = "fingerprint", %fingerprint, "The master's TLS certificate is pinned; members' certificates are learned from XAPI");
            }
        }
        TrustMode::System => tracing::info!(
            mode = "system",
            "TLS certificates of the pool are verified against the system roots; XCP-ng's self-signed ones need XEN_SSL_CA_FILE or XEN_SSL_FINGERPRINT"
        ),
    }
    if pool.endpoint.scheme == Scheme::Http {
        tracing::warn!(
            "XEN_HOST uses http://: the XAPI password and session cross the network in clear"
        );
    }
}

async fn check(config: Config) -> ExitCode {
    let Some((pool, demo)) = configured_or_demo(&config).await else {
        return ExitCode::FAILURE;
    };
    // With a configuration file, every pool of it is checked in turn.
    let pools = match (&config.file_pools, &demo) {
        (Some(pools), None) => pools.clone(),
        _ => vec![pool],
    };
    let mut ok = true;
    for pool in &pools {
        announce_trust(pool);
        let report = xen_exporter::check::check(pool).await;
        #[allow(clippy::print_stdout)]
        {
            if pools.len() > 1 {
                println!("== pool {}", pool.name);
            }
            print!("{report}");
        }
        ok &= report.ok();
    }
    if let Some(demo) = demo {
        demo.shutdown().await;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// The configured pool, or with `--demo` a freshly started simulator's; `None` (after saying
/// why) when the simulator cannot start.
async fn configured_or_demo(config: &Config) -> Option<(PoolConfig, Option<Demo>)> {
    if !config.demo {
        return Some((config.pool.clone(), None));
    }
    match Demo::start().await {
        // The naming is the one setting of the pool the demo takes: a way to see either.
        Ok((pool, demo)) => Some((
            PoolConfig {
                naming: config.pool.naming,
                ..pool
            },
            Some(demo),
        )),
        Err(error) => {
            eprintln!("xen-exporter: cannot start the demo pool: {error}");
            None
        }
    }
}

/// Why `--demo` does not run in this build.
const NO_DEMO: &str = "--demo: this build lacks the `demo` feature (the simulated pool); rebuild with default features";

/// Stands in for `xen_exporter::demo::Demo` in a build without the `demo` feature, where
/// `main` refuses `--demo`: a type without values, so that the code around it is the same in
/// both builds.
#[cfg(not(feature = "demo"))]
#[derive(Debug)]
enum Demo {}

#[cfg(not(feature = "demo"))]
impl Demo {
    async fn start() -> Result<(PoolConfig, Demo), String> {
        Err(NO_DEMO.into())
    }

    async fn shutdown(self) {
        match self {}
    }
}

/// An address a browser on this machine can open (0.0.0.0 and :: are not).
fn demo_address(address: std::net::SocketAddr) -> String {
    if address.ip().is_unspecified() {
        format!("localhost:{}", address.port())
    } else {
        address.to_string()
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "Cannot watch SIGTERM; only Ctrl-C stops the exporter");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("Shutting down");
}

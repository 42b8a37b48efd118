//! The HTTP surface: content negotiation, gzip, health and readiness, the status page and
//! shared collections.

use std::io::Read;
use std::time::Duration;

use xapi_sim::{HostFault, Sim, SimConfig};
use xen_exporter::config::{Mode, PoolConfig};
use xen_exporter::{Pools, WebOptions};

use crate::harness::{PATIENCE, Scrape, TestEnv};

#[tokio::test]
async fn openmetrics_when_asked_text_otherwise() {
    let env = TestEnv::start(SimConfig::default()).await;
    env.sim.set_host_fault(1, xapi_sim::HostFault::Refuse);
    let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let response = env
        .get_with("/metrics", &[("accept", prometheus_accept)])
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = response.text().await.unwrap();
    assert!(body.ends_with("# EOF\n"));
    // The failing host's error counter: family named without `_total`, samples with it.
    assert!(body.contains("# TYPE xen_host_scrape_errors counter\n"));
    assert!(body.contains("\nxen_host_scrape_errors_total{"));
    assert!(body.contains("# TYPE xen_host_iops_total unknown"));
    let plain = env.get_with("/metrics", &[("accept", "*/*")]).await;
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!plain.text().await.unwrap().contains("# EOF"));
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn gzip_when_asked() {
    let env = TestEnv::start(SimConfig::default()).await;
    let gunzip = |compressed: &[u8]| {
        let mut text = String::new();
        let mut decoder = flate2::read::GzDecoder::new(compressed);
        decoder.read_to_string(&mut text).unwrap();
        // One gzip member and nothing after it: clients that read only the first get all.
        assert!(decoder.into_inner().is_empty());
        text
    };
    let records = |text: &str| {
        text.lines()
            .filter(|l| l.contains("xen_vm_power_state") || l.contains("xen_sr_info"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let plain = env.get("/metrics").await.text().await.unwrap();
    assert!(!records(&plain).is_empty());
    // The record families are compressed once, by the first gzip response, and reused by the
    // second; the hosts' rows are compressed by each.
    for _ in 0..2 {
        let response = env
            .get_with("/metrics", &[("accept-encoding", "gzip")])
            .await;
        assert_eq!(response.headers()["content-encoding"], "gzip");
        let text = gunzip(&response.bytes().await.unwrap());
        let scrape = crate::harness::Scrape::parse(&text);
        assert!(!scrape.all("xen_vm_cpu").is_empty());
        assert_eq!(records(&text), records(&plain));
    }
    let response = env
        .get_with(
            "/metrics",
            &[
                ("accept", "application/openmetrics-text; version=1.0.0"),
                ("accept-encoding", "gzip"),
            ],
        )
        .await;
    let text = gunzip(&response.bytes().await.unwrap());
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("xen_vm_power_state"));
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_status_page_do_not_collect() {
    let env = TestEnv::start(SimConfig::default()).await;
    // Ready means logged in; a scrape waits for the inventory's first full read, whose calls
    // would otherwise land among the counted ones on a busy machine.
    env.scrape().await;
    env.sim.reset_counters();
    assert_eq!(env.get("/-/healthy").await.status(), 200);
    assert_eq!(env.get("/-/ready").await.status(), 200);
    let status = env.get("/").await;
    assert_eq!(status.status(), 200);
    let html = status.text().await.unwrap();
    assert!(html.contains("href=\"metrics\""));
    assert!(!html.contains(env.sim.password()));
    assert_eq!(env.get("/nope").await.status(), 404);
    let counters = env.sim.counters();
    // Only the inventory's event stream, which runs whether anyone scrapes or not.
    assert!(
        counters.rpc.keys().all(|m| m == "event.from"),
        "{:?}",
        counters.rpc
    );
    assert!(counters.rrd_updates.iter().all(|&n| n == 0));
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn not_ready_until_the_first_login() {
    let sim = xapi_sim::Sim::start(SimConfig::default()).await.unwrap();
    let mut config = crate::harness::pool_config(&sim, xen_exporter::config::Mode::Pool);
    config.password = xen_exporter::config::Secret::new("wrong");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(xen_exporter::run(config, listener, async move {
        let _ = rx.await;
    }));
    let client = crate::harness::http_client();
    let ready = client.get(format!("{url}/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200, "a failing pool is data, not a 500");
    let scrape = crate::harness::Scrape::parse(&metrics.text().await.unwrap());
    // Every failed attempt to read the inventory counts, retried with back-off meanwhile.
    let failures = scrape.value(
        "xen_collector_errors_total",
        &[("source", "inventory"), ("reason", "auth")],
    );
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    sim.shutdown().await;
}

/// An XAPI timeout far beyond any test: a host told to hang is let go by the test lifting
/// the fault, never by the exporter giving up on it.
const NO_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn concurrent_scrapes_share_one_collection() {
    let env = TestEnv::start_with(
        SimConfig {
            hosts: 2,
            ..SimConfig::default()
        },
        |config| config.timeout = NO_TIMEOUT,
    )
    .await;
    // Logged in and the inventory read, so that only the scrapes' calls are counted.
    env.scrape().await;
    // Host 0 holds the collection in flight until every scrape has joined it.
    env.sim.set_host_fault(0, HostFault::Hang);
    env.sim.reset_counters();
    let requests = (0..20).map(|_| {
        env.http
            .get(format!("{}/metrics", env.url))
            .timeout(PATIENCE)
            .send()
    });
    // Headers come while the hosts are fetched: once all twenty have theirs, all twenty are
    // in, and the held collection is the only one that can have started.
    let responses = futures::future::join_all(requests).await;
    env.sim.set_host_fault(0, HostFault::None);
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        let scrape = Scrape::parse(&response.text().await.unwrap());
        assert_eq!(scrape.all("xen_host_up").len(), 2);
    }
    let counters = env.sim.counters();
    assert_eq!(
        counters.rrd_updates[1], 1,
        "20 concurrent scrapes made {:?} rrd_updates requests",
        counters.rrd_updates
    );
    assert!(counters.rrd_updates[0] <= 1, "{:?}", counters.rrd_updates);
    env.stop().await.shutdown().await;
}

/// The soft limit on this process's open files: on Linux the "Max open files" line of
/// `/proc/self/limits`; elsewhere, or unreadable, 256 (macOS's default, the lowest usual).
fn open_files_soft_limit() -> u64 {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            match line.split_whitespace().nth(3)? {
                "unlimited" => Some(u64::MAX),
                soft => soft.parse().ok(),
            }
        });
    soft.unwrap_or(256)
}

/// Descriptors this process has open now (Linux); elsewhere a guess.
fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(64, |dir| dir.count() as u64)
}

/// How many scrapes to send at once: up to a thousand, as far as the descriptor limit
/// allows. The exporter and the simulator run in this process, so each scrape costs two
/// descriptors (the client's socket and the exporter's), and other tests running alongside
/// need theirs: the burst takes at most half of what is free beyond a reserve for them.
fn burst_size() -> usize {
    const RESERVE: u64 = 128;
    let free = open_files_soft_limit().saturating_sub(open_files() + RESERVE);
    usize::try_from((free / 4).min(1000)).unwrap_or(1000)
}

#[tokio::test]
async fn a_burst_beyond_the_cap_costs_one_collection_and_leaves_the_exporter_serving() {
    let burst = burst_size();
    // The default cap of 40 when the burst is large enough to exceed it well; a smaller one
    // under a low descriptor limit, so that the burst still goes beyond it.
    let cap = (burst / 2).min(40);
    assert!(
        cap >= 1,
        "a soft limit of {} open files leaves no room for a burst (raise ulimit -n)",
        open_files_soft_limit()
    );
    let sim = Sim::start(SimConfig {
        hosts: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = PoolConfig {
        timeout: NO_TIMEOUT,
        ..crate::harness::pool_config(&sim, Mode::Pool)
    };
    let web = WebOptions {
        max_requests: cap,
        ..WebOptions::default()
    };
    let env = TestEnv::start_pools(sim, Pools::single(config), web).await;
    env.scrape().await;
    // One connection per request: no idle connection is kept, so none is reused.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    // Host 0 holds the collection in flight until every request has been answered.
    env.sim.set_host_fault(0, HostFault::Hang);
    env.sim.reset_counters();
    let requests = (0..burst).map(|_| async {
        match client
            .get(format!("{}/metrics", env.url))
            .timeout(PATIENCE)
            .send()
            .await
        {
            // Keeps the served ones, whose bodies come when the collection ends.
            Ok(response) if response.status() == 200 => (200, Some(response)),
            Ok(response) => (response.status().as_u16(), None),
            Err(_) => (0, None),
        }
    });
    let answers = futures::future::join_all(requests).await;
    let count = |status: u16| answers.iter().filter(|(s, _)| *s == status).count();
    let (ok, busy) = (count(200), count(503));
    eprintln!("{burst} concurrent scrapes, cap {cap}: {ok} answered 200, {busy} answered 503");
    assert_eq!(
        ok + busy,
        burst,
        "every request answered; {} failed",
        count(0)
    );
    // Each served request holds its slot until its body is sent, which the held collection
    // prevents: exactly `cap` are served, every other one is turned away.
    assert_eq!(ok, cap, "served");
    env.sim.set_host_fault(0, HostFault::None);
    for response in answers.into_iter().filter_map(|(_, r)| r) {
        let scrape = Scrape::parse(&response.text().await.unwrap());
        assert_eq!(scrape.all("xen_host_up").len(), 2);
    }
    // One collection for all of them: host 1 was asked once.
    let rrd = env.sim.counters().rrd_updates;
    assert_eq!(rrd[1], 1, "/rrd_updates per host: {rrd:?}");
    // And it serves normally afterwards, slots given back.
    let scrape = env.scrape().await;
    assert!(scrape.all("xen_host_up").iter().all(|s| s.value == 1.0));
    env.stop().await.shutdown().await;
}

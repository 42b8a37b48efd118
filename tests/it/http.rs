//! The HTTP surface: content negotiation, gzip, health and readiness, the landing page and
//! shared collections.

use std::io::Read;

use xapi_sim::SimConfig;

use crate::harness::TestEnv;

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
async fn health_readiness_and_landing_page_do_not_collect() {
    let env = TestEnv::start(SimConfig::default()).await;
    // Ready means logged in; a scrape waits for the inventory's first full read, whose calls
    // would otherwise land among the counted ones on a busy machine.
    env.scrape().await;
    env.sim.reset_counters();
    assert_eq!(env.get("/-/healthy").await.status(), 200);
    assert_eq!(env.get("/-/ready").await.status(), 200);
    let landing = env.get("/").await;
    assert_eq!(landing.status(), 200);
    let html = landing.text().await.unwrap();
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

#[tokio::test]
async fn concurrent_scrapes_share_one_collection() {
    let env = TestEnv::start(SimConfig {
        hosts: 2,
        ..SimConfig::default()
    })
    .await;
    env.sim.set_host_fault(
        0,
        xapi_sim::HostFault::Delay(std::time::Duration::from_millis(300)),
    );
    env.sim.reset_counters();
    let scrapes = (0..20).map(|_| env.scrape());
    let results = futures::future::join_all(scrapes).await;
    assert!(results.iter().all(|s| !s.all("xen_host_up").is_empty()));
    let counters = env.sim.counters();
    assert!(
        counters.rrd_updates.iter().all(|&n| n <= 2),
        "20 concurrent scrapes made {:?} rrd_updates requests",
        counters.rrd_updates
    );
    env.sim.set_host_fault(0, xapi_sim::HostFault::None);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_thousand_concurrent_scrapes_cost_one_collection_and_leave_the_exporter_serving() {
    let env = TestEnv::start(SimConfig {
        hosts: 2,
        ..SimConfig::default()
    })
    .await;
    env.scrape().await;
    // One connection each: a thousand clients, not one client's keep-alive pool. Built
    // beforehand (each reads the system's root certificates), so that the requests go out
    // together instead of one client construction apart.
    let clients: Vec<reqwest::Client> = (0..1000)
        .map(|_| {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap()
        })
        .collect();
    // Keep the collection in flight long enough for every request to arrive during it.
    env.sim.set_host_fault(
        0,
        xapi_sim::HostFault::Delay(std::time::Duration::from_millis(1500)),
    );
    env.sim.reset_counters();
    let started = std::time::Instant::now();
    let requests = clients.iter().map(|client| async {
        match client
            .get(format!("{}/metrics", env.url))
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    });
    let statuses = futures::future::join_all(requests).await;
    // The answers' headers come before the collection ends: a scrape joins it (or, if it has
    // ended, runs one more), so that its /rrd_updates are counted.
    env.scrape().await;
    let elapsed = started.elapsed();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    let rrd = env.sim.counters().rrd_updates;
    eprintln!(
        "1000 concurrent scrapes: {ok} answered 200, {busy} answered 503, in {elapsed:?}; /rrd_updates per host {rrd:?}"
    );
    assert_eq!(ok + busy, 1000, "every request answered: {statuses:?}");
    assert!(ok >= 1 && busy >= 1, "{ok} served, {busy} turned away");
    // Collections never overlap: each takes 1.5 s on host 0, so no more of them than fit
    // end to end in the time all requests took.
    let sequential = (elapsed.as_secs_f64() / 1.5).floor() as u64 + 1;
    assert!(
        rrd.iter().all(|&n| n >= 1 && n <= sequential),
        "{rrd:?} /rrd_updates in {elapsed:?}"
    );
    env.sim.set_host_fault(0, xapi_sim::HostFault::None);
    // And it still serves normally afterwards.
    assert!(!env.scrape().await.all("xen_host_up").is_empty());
    env.stop().await.shutdown().await;
}

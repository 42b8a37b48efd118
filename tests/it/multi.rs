//! Many pools: `/probe?target=` per pool, deadlines from Prometheus' scrape-timeout header,
//! master failover, and a real Prometheus server sharding two pools over two exporter
//! replicas with `hashmod`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xapi_sim::{HostFault, Sim, SimConfig};
use xen_exporter::config::{Mode, PoolConfig};
use xen_exporter::server::Exposure;
use xen_exporter::{Pools, WebOptions};

use crate::harness::{PATIENCE, Scrape, TestEnv, http_client, poll_until};
use crate::prometheus::{self, Prometheus};

/// An exporter serving several pools from one process, as `--config.file` does.
struct Replica {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Replica {
    async fn start(configs: Vec<PoolConfig>) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let pools = Pools {
            configs,
            exposure: Exposure::ProbePerPool,
            ..Pools::single(dummy())
        };
        let task = tokio::spawn(xen_exporter::run_pools(
            pools,
            listener,
            WebOptions::default(),
            async move {
                let _ = rx.await;
            },
        ));
        Replica {
            url,
            shutdown: Some(tx),
            task,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        http_client()
            .get(format!("{}{path}", self.url))
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("replica stops")
            .unwrap()
            .unwrap();
    }
}

/// Placeholder pool for `Pools::single`'s other defaults; replaced by `configs`.
fn dummy() -> PoolConfig {
    PoolConfig {
        name: String::new(),
        endpoint: xen_exporter::config::Endpoint::parse("localhost").unwrap(),
        members: Vec::new(),
        user: "root".into(),
        password: xen_exporter::config::Secret::default(),
        tls: xen_exporter::config::TlsConfig::default(),
        mode: Mode::Pool,
        halt_on_no_uuid: false,
        timeout: Duration::from_secs(5),
        collectors: xen_exporter::config::Collectors::default(),
        naming: xen_exporter::config::Naming::default(),
        hash_uuids_key: None,
    }
}

fn named(sim: &Sim, name: &str) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        ..crate::harness::pool_config(sim, Mode::Pool)
    }
}

async fn sim(hosts: usize, seed: u64) -> Sim {
    Sim::start(SimConfig {
        hosts,
        vms_per_host: 2,
        seed,
        nan_ratio: 0.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn host_uuids(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .all("xen_host_up")
        .iter()
        .map(|s| s.labels["host_uuid"].clone())
        .collect()
}

#[tokio::test]
async fn each_probe_target_is_one_pool_and_metrics_is_the_exporter_itself() {
    let (a, b) = (sim(2, 11).await, sim(3, 12).await);
    let replica = Replica::start(vec![named(&a, "alpha"), named(&b, "beta")]).await;
    // Nothing is asked of a pool before its first probe.
    let own = Scrape::parse(&replica.get("/metrics").await.text().await.unwrap());
    assert_eq!(own.value("xen_pool_up", &[("pool", "alpha")]), Some(0.0));
    assert_eq!(a.counters().logins + b.counters().logins, 0);

    for (sim, name) in [(&a, "alpha"), (&b, "beta")] {
        let response = replica.get(&format!("/probe?target={name}")).await;
        assert_eq!(response.status(), 200);
        let scrape = Scrape::parse(&response.text().await.unwrap());
        let expected: BTreeSet<String> = sim.view().hosts.into_iter().map(|h| h.uuid).collect();
        assert_eq!(
            host_uuids(&scrape),
            expected,
            "{name}: exactly its own hosts"
        );
        assert!(scrape.all("xen_host_up").iter().all(|s| s.value == 1.0));
        assert!(!scrape.all("xen_vm_cpu").is_empty());
    }
    assert_eq!(
        replica.get("/probe?target=gamma").await.status(),
        404,
        "unknown pool"
    );
    assert_eq!(replica.get("/probe").await.status(), 400, "no target");

    let own = Scrape::parse(&replica.get("/metrics").await.text().await.unwrap());
    for name in ["alpha", "beta"] {
        assert_eq!(
            own.value("xen_pool_up", &[("pool", name)]),
            Some(1.0),
            "{name}"
        );
        assert_eq!(
            own.value("xen_exporter_xapi_logins_total", &[("pool", name)]),
            Some(1.0)
        );
        assert_eq!(
            own.value("xen_pool_master_failovers_total", &[("pool", name)]),
            Some(0.0)
        );
        assert!(
            own.value(
                "xen_exporter_xapi_requests_total",
                &[("pool", name), ("kind", "rrd"), ("outcome", "ok")]
            )
            .is_some_and(|n| n >= 2.0)
        );
        assert!(
            own.value("xen_pool_last_success_timestamp_seconds", &[("pool", name)])
                .is_some()
        );
    }
    assert!(
        own.all("xen_host_cpu").is_empty(),
        "/metrics collects no pool"
    );
    assert_eq!(own.all("xen_exporter_build_info").len(), 1);
    replica.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_host_slower_than_the_scrape_timeout_is_down_before_prometheus_gives_up() {
    // Prometheus gives up after SCRAPE_TIMEOUT; the exporter answers OFFSET before that. The
    // offset is larger than the default half second, so that the bound checked (the answer
    // comes before Prometheus gives up) keeps seconds of margin on a busy machine. The XAPI
    // timeout is far longer still: only the scrape's deadline can end the wait on the host.
    const SCRAPE_TIMEOUT: Duration = Duration::from_secs(6);
    const OFFSET: Duration = Duration::from_secs(3);
    let sim = Sim::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = PoolConfig {
        timeout: Duration::from_secs(600),
        ..crate::harness::pool_config(&sim, Mode::Pool)
    };
    let pools = Pools {
        timeout_offset: OFFSET,
        ..Pools::single(config)
    };
    let env = TestEnv::start_pools(sim, pools, WebOptions::default()).await;
    env.scrape().await;
    // Hangs until the test lifts the fault.
    env.sim.set_host_fault(2, HostFault::Hang);
    let started = std::time::Instant::now();
    let response = env
        .http
        .get(format!("{}/metrics", env.url))
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            SCRAPE_TIMEOUT.as_secs().to_string(),
        )
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("answer with a 6 s scrape timeout, a 3 s offset and a hanging host: {elapsed:?}");
    // The hanging host cannot end the collection, so the answer comes at the deadline or
    // later; the bound that matters is the other one.
    assert!(elapsed >= SCRAPE_TIMEOUT - OFFSET, "{elapsed:?}");
    assert!(elapsed < SCRAPE_TIMEOUT, "{elapsed:?}");
    let scrape = Scrape::parse(&text);
    let view = env.sim.view();
    let up = |h: usize| scrape.value("xen_host_up", &[("host_uuid", &view.hosts[h].uuid)]);
    assert_eq!((up(0), up(1), up(2)), (Some(1.0), Some(1.0), Some(0.0)));
    assert_eq!(
        scrape.value(
            "xen_host_scrape_errors_total",
            &[("host_uuid", &view.hosts[2].uuid), ("reason", "timeout")]
        ),
        Some(1.0)
    );
    env.sim.set_host_fault(2, HostFault::None);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_pool_of_hanging_hosts_does_not_hold_up_another_pools_probe() {
    let (a, b) = (sim(3, 31).await, sim(2, 32).await);
    // Alpha's XAPI timeout is far away: its hosts' hang ends when the test lifts it, and not
    // before, whatever the time the rest takes.
    let alpha = PoolConfig {
        timeout: Duration::from_secs(600),
        ..named(&a, "alpha")
    };
    let replica = Replica::start(vec![alpha, named(&b, "beta")]).await;
    let client = http_client();
    let probe = |target: &'static str| {
        let (client, url) = (client.clone(), replica.url.clone());
        async move {
            let response = client
                .get(format!("{url}/probe?target={target}"))
                .timeout(PATIENCE)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            Scrape::parse(&response.text().await.unwrap())
        }
    };
    // Both pools logged in, their inventories read.
    probe("alpha").await;
    probe("beta").await;
    for h in 0..3 {
        a.set_host_fault(h, HostFault::Hang);
    }
    // Alpha's probe: its headers come at once (the record families are written while the
    // hosts are fetched); what hangs is the body.
    let (headers, headers_sent) = oneshot::channel();
    let hanging = tokio::spawn({
        let url = replica.url.clone();
        async move {
            let response = http_client()
                .get(format!("{url}/probe?target=alpha"))
                .timeout(PATIENCE)
                .send()
                .await?;
            let _ = headers.send(response.status().as_u16());
            response.text().await
        }
    });
    let status = tokio::time::timeout(PATIENCE, headers_sent)
        .await
        .expect("alpha's probe answers its headers")
        .expect("alpha's probe is under way");
    assert_eq!(status, 200);
    // Beta is probed again and again while alpha's collection waits on its hung hosts: had
    // beta's probes waited on alpha's, they could not finish before the hang is lifted.
    let beta_hosts: BTreeSet<String> = b.view().hosts.into_iter().map(|h| h.uuid).collect();
    for _ in 0..9 {
        let scrape = probe("beta").await;
        assert_eq!(host_uuids(&scrape), beta_hosts);
        assert!(scrape.all("xen_host_up").iter().all(|s| s.value == 1.0));
    }
    assert!(
        !hanging.is_finished(),
        "alpha's probe waits for its hosts until the hang is lifted"
    );
    for h in 0..3 {
        a.set_host_fault(h, HostFault::None);
    }
    // Let go, alpha's hosts close what they held: the probe answers, every host of alpha
    // in it (down, or up if the request was tried again on a new connection).
    let body = tokio::time::timeout(PATIENCE, hanging)
        .await
        .expect("alpha's probe ends once its hosts are let go")
        .unwrap()
        .unwrap();
    let alpha_hosts: BTreeSet<String> = a.view().hosts.into_iter().map(|h| h.uuid).collect();
    assert_eq!(host_uuids(&Scrape::parse(&body)), alpha_hosts);
    replica.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

/// (name, labels) of every series, minus those whose identity legitimately changes when the
/// master moves: error and request counters, the pool's info naming the master, and the
/// data sources only the master reports (`pool_session_count`, ...), which move with it.
fn identities(scrape: &Scrape) -> BTreeSet<(String, BTreeMap<String, String>)> {
    scrape
        .series
        .iter()
        .filter(|s| {
            !s.name.ends_with("_errors_total")
                && !s.name.starts_with("xen_exporter_xapi_request")
                && s.name != "xen_pool_info"
                && !s.name.starts_with("xen_host_pool_")
        })
        .map(|s| (s.name.clone(), s.labels.clone()))
        .collect()
}

#[tokio::test]
async fn a_master_switch_between_scrapes_keeps_every_series_and_counts_one_failover() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        nan_ratio: 0.0,
        ..SimConfig::default()
    })
    .await;
    // A second scrape: the first has no previous collection duration to report.
    env.scrape().await;
    let before = env.scrape().await;
    assert_eq!(before.all("xen_pool_master_failovers_total")[0].value, 0.0);
    env.sim.set_master(1);
    let after = env.scrape().await;
    assert!(after.all("xen_host_up").iter().all(|s| s.value == 1.0));
    let (was, now) = (identities(&before), identities(&after));
    let lost: Vec<_> = was.difference(&now).collect();
    let new: Vec<_> = now.difference(&was).collect();
    assert!(
        lost.is_empty() && new.is_empty(),
        "lost {lost:?}\nnew {new:?}"
    );
    let new_master = env.sim.view().hosts[1].uuid.clone();
    let sessions = after.all("xen_host_pool_session_count");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].labels["host_uuid"], new_master);
    let failovers = |s: &Scrape| s.all("xen_pool_master_failovers_total")[0].value;
    assert_eq!(failovers(&after), 1.0);
    // The inventory follows too, by event.from: the pool record names the new master.
    let later = poll_until("the pool record names the new master", async || {
        let later = env.scrape().await;
        let named = later.all("xen_pool_info")[0].labels["master_uuid"].clone();
        match named == new_master {
            true => Ok(later),
            false => Err(named),
        }
    })
    .await;
    assert_eq!(failovers(&later), 1.0);
    assert_eq!(later.all("xen_pool_up")[0].value, 1.0);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_dead_master_is_replaced_by_asking_the_other_members() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        nan_ratio: 0.0,
        ..SimConfig::default()
    })
    .await;
    env.scrape().await;
    // The master dies; host 2 takes over (an HA emergency transition).
    env.sim.set_host_fault(0, HostFault::Refuse);
    env.sim.set_master(2);
    let view = env.sim.view();
    let scrape = poll_until("the exporter finds the new master", async || {
        let scrape = env.scrape().await;
        let state = (
            scrape.all("xen_pool_up")[0].value,
            scrape.all("xen_pool_master_failovers_total")[0].value,
        );
        match state {
            (1.0, 1.0) => Ok(scrape),
            _ => Err(format!("(pool up, failovers) = {state:?}")),
        }
    })
    .await;
    let up = |h: usize| scrape.value("xen_host_up", &[("host_uuid", &view.hosts[h].uuid)]);
    assert_eq!((up(0), up(1), up(2)), (Some(0.0), Some(1.0), Some(1.0)));
    env.sim.set_host_fault(0, HostFault::None);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn prometheus_shards_two_pools_over_two_replicas_with_hashmod() {
    let Some(prometheus) = prometheus::binary() else {
        return;
    };
    let (a, b) = (sim(2, 21).await, sim(2, 22).await);
    // Both replicas know both pools; hashmod decides which one Prometheus asks for each.
    let configs = vec![named(&a, "alpha"), named(&b, "beta")];
    let replicas = [
        Replica::start(configs.clone()).await,
        Replica::start(configs).await,
    ];
    let address = |r: &Replica| r.url.trim_start_matches("http://").to_string();
    let config = format!(
        r#"global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: xen
    metrics_path: /probe
    static_configs:
      - targets: [alpha, beta]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__address__]
        target_label: instance
      - source_labels: [__address__]
        modulus: 2
        target_label: __tmp_shard
        action: hashmod
      - source_labels: [__tmp_shard]
        regex: "0"
        target_label: __address__
        replacement: {r0}
      - source_labels: [__tmp_shard]
        regex: "1"
        target_label: __address__
        replacement: {r1}
  - job_name: xen-exporter
    static_configs:
      - targets: [{r0}, {r1}]
"#,
        r0 = address(&replicas[0]),
        r1 = address(&replicas[1]),
    );
    let server = Prometheus::start(&prometheus, &config);
    let http = http_client();
    let mut expected_hosts = BTreeSet::new();
    let mut expected_vms = BTreeSet::new();
    for sim in [&a, &b] {
        let view = sim.view();
        expected_hosts.extend(view.hosts.iter().map(|h| h.uuid.clone()));
        expected_vms.extend(
            view.vms
                .iter()
                .filter(|v| !v.is_a_template && !v.is_a_snapshot)
                .map(|v| v.uuid.clone()),
        );
    }
    let per = |results: &[serde_json::Value], label: &str| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in results {
            if let Some(v) = r["metric"][label].as_str() {
                *counts.entry(v.to_string()).or_default() += 1;
            }
        }
        counts
    };
    poll_until("Prometheus sees every series exactly once", async || {
        let up = server.query("up").await;
        let hosts = server.query("xen_host_up").await;
        let vms = server.query("xen_vm_power_state").await;
        let all_up = up.len() == 4 && up.iter().all(|r| r["value"][1] == "1");
        let host_counts = per(&hosts, "host_uuid");
        let vm_counts = per(&vms, "vm_uuid");
        let exactly_once = |counts: &BTreeMap<String, usize>, want: &BTreeSet<String>| {
            counts.keys().cloned().collect::<BTreeSet<_>>() == *want
                && counts.values().all(|&n| n == 1)
        };
        match all_up
            && exactly_once(&host_counts, &expected_hosts)
            && exactly_once(&vm_counts, &expected_vms)
            && hosts.iter().all(|r| r["value"][1] == "1")
        {
            true => Ok(()),
            false => Err(format!(
                "up={up:?}\nhosts={host_counts:?}\nvms={vm_counts:?}\n{}",
                server.log()
            )),
        }
    })
    .await;

    // hashmod sent the two pools to different replicas, and each replica logged in only to
    // the pool it serves.
    let targets: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/api/v1/targets", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let scraped: BTreeSet<String> = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["labels"]["job"] == "xen")
        .map(|t| {
            t["discoveredLabels"]["__address__"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .zip(
            targets["data"]["activeTargets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["labels"]["job"] == "xen")
                .map(|t| t["scrapeUrl"].as_str().unwrap_or("").to_string()),
        )
        .map(|(_, url)| url.split("/probe").next().unwrap_or("").to_string())
        .collect();
    assert_eq!(scraped.len(), 2, "one replica per pool: {scraped:?}");
    assert_eq!((a.counters().logins, b.counters().logins), (1, 1));

    drop(server);
    for replica in replicas {
        replica.stop().await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

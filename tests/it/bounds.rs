//! Bounds that hold from the first request: `--web.max-requests` caps `/probe` as it caps
//! `/metrics`, and the error counters exist at zero before anything has failed.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xapi_sim::{HostFault, Sim, SimConfig};
use xen_exporter::collect::HostReason;
use xen_exporter::config::{Mode, PoolConfig};
use xen_exporter::inventory::live::{Reason as CollectorReason, Source};
use xen_exporter::server::Exposure;
use xen_exporter::{Pools, WebOptions};

use crate::harness::{Scrape, TestEnv, http_client};

/// An exporter with a configuration file's layout: each pool behind `/probe?target=`.
struct Replica {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Replica {
    async fn start(pool: PoolConfig, web: WebOptions) -> Replica {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let pools = Pools {
            exposure: Exposure::ProbePerPool,
            ..Pools::single(pool)
        };
        let task = tokio::spawn(xen_exporter::run_pools(pools, listener, web, async move {
            let _ = rx.await;
        }));
        Replica {
            url,
            shutdown: Some(tx),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("replica stops")
            .unwrap()
            .unwrap();
    }
}

/// The default `--web.max-requests`.
const CAP: usize = 40;

#[tokio::test]
async fn probes_beyond_the_cap_get_503_at_once_and_the_admitted_share_one_collection() {
    const PROBES: usize = 200;
    const HOSTS: usize = 3;
    const SLOW: usize = 1;
    let sim = Sim::start(SimConfig {
        hosts: HOSTS,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // A pool timeout well beyond the slow host's delay: the admitted probes wait for it.
    let pool = PoolConfig {
        name: "lab".into(),
        ..xen_exporter::demo::simulator_pool(&sim, Mode::Pool, Duration::from_secs(60))
    };
    let web = WebOptions::default();
    assert_eq!(web.max_requests, CAP);
    let replica = Replica::start(pool, web).await;
    let probe = replica.url("/probe?target=lab");
    let http = http_client();
    // The first probe logs in and reads the inventory; its slot is free once its body is
    // read (the server drops the body, and with it the slot, before the final chunk).
    let first = http.get(&probe).send().await.unwrap();
    assert_eq!(first.status(), 200);
    first.text().await.unwrap();

    // The slow host answers its /rrd_updates only when the test lets it, after every probe
    // has been admitted or turned away: its counter stays 0 until then.
    sim.set_host_fault(SLOW, HostFault::Hold);
    sim.reset_counters();
    let requests: Vec<_> = (0..PROBES)
        .map(|_| {
            let request = http.get(&probe).timeout(Duration::from_secs(60)).send();
            tokio::spawn(async move {
                let response = request.await.unwrap();
                match response.status().as_u16() {
                    // The headers of an admitted probe come before the collection ends (the
                    // record families are written first); its body is read later.
                    200 => Ok(response),
                    status => Err((status, response.text().await.unwrap())),
                }
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for request in requests {
        match request.await.unwrap() {
            Ok(response) => admitted.push(response),
            Err(answer) => refused.push(answer),
        }
    }
    // Every refusal has arrived, and the slow host has still not answered: refusals do not
    // wait for the collection.
    assert_eq!(
        sim.counters().rrd_updates[SLOW],
        0,
        "the slow host answered before the last refusal"
    );
    assert_eq!(
        admitted.len(),
        CAP,
        "one shared cap; {} refused",
        refused.len()
    );
    assert_eq!(refused.len(), PROBES - CAP);
    for (status, body) in &refused {
        assert_eq!(*status, 503);
        assert_eq!(
            body,
            "Limit of concurrent requests reached (40), try again later.\n"
        );
    }
    // One limit for every collecting endpoint: `/metrics` is turned away too while the
    // probes hold every slot; the cheap endpoints are not counted.
    let metrics = http.get(replica.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 503);
    let healthy = http.get(replica.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert_eq!(sim.counters().rrd_updates[SLOW], 0, "still held");
    sim.set_host_fault(SLOW, HostFault::None);
    let bodies: Vec<_> = admitted
        .into_iter()
        .map(|response| tokio::spawn(response.text()))
        .collect();
    for body in bodies {
        let scrape = Scrape::parse(&body.await.unwrap().unwrap());
        let up: Vec<f64> = scrape.all("xen_host_up").iter().map(|s| s.value).collect();
        assert_eq!(up, [1.0; HOSTS], "every admitted probe has every host");
    }
    assert_eq!(
        sim.counters().rrd_updates,
        [1; HOSTS],
        "the admitted probes shared one collection"
    );
    // The slots were given back with the bodies.
    let after = http.get(&probe).send().await.unwrap();
    assert_eq!(after.status(), 200);
    after.text().await.unwrap();
    replica.stop().await;
    sim.shutdown().await;
}

/// Every host reason's label value, from the closed set the exporter counts by.
fn host_reasons() -> Vec<&'static str> {
    HostReason::all().map(HostReason::as_str).collect()
}

/// Every (source, reason) pair of `xen_collector_errors_total`.
fn collector_pairs() -> Vec<(&'static str, &'static str)> {
    Source::ALL
        .into_iter()
        .flat_map(|s| CollectorReason::all().map(move |r| (s.as_str(), r.as_str())))
        .collect()
}

#[tokio::test]
async fn error_counters_are_zero_before_the_first_failure_and_count_it_once() {
    const HOSTS: usize = 3;
    const DEAD: usize = 1;
    let env = TestEnv::start(SimConfig {
        hosts: HOSTS,
        ..SimConfig::default()
    })
    .await;
    let hosts = env.sim.view().hosts;
    let healthy = env.scrape().await;
    for host in &hosts {
        for reason in host_reasons() {
            assert_eq!(
                healthy.value(
                    "xen_host_scrape_errors_total",
                    &[
                        ("host", &host.name),
                        ("host_uuid", &host.uuid),
                        ("reason", reason)
                    ]
                ),
                Some(0.0),
                "{} {reason}",
                host.name
            );
        }
    }
    assert_eq!(
        healthy.all("xen_host_scrape_errors_total").len(),
        HOSTS * host_reasons().len(),
        "nothing but every host × every reason"
    );
    for (source, reason) in collector_pairs() {
        assert_eq!(
            healthy.value(
                "xen_collector_errors_total",
                &[("source", source), ("reason", reason)]
            ),
            Some(0.0),
            "{source} {reason}"
        );
    }
    assert_eq!(
        healthy.all("xen_collector_errors_total").len(),
        collector_pairs().len()
    );

    // One refused fetch.
    env.sim.set_host_fault(DEAD, HostFault::Refuse);
    let failed = env.scrape().await;
    env.sim.set_host_fault(DEAD, HostFault::None);
    let dead = &hosts[DEAD];
    assert_eq!(
        failed.value("xen_host_up", &[("host_uuid", &dead.uuid)]),
        Some(0.0)
    );
    let counted: Vec<&str> = failed
        .all("xen_host_scrape_errors_total")
        .into_iter()
        .filter(|s| s.value != 0.0)
        .map(|s| {
            assert_eq!(s.labels["host_uuid"], dead.uuid, "only the refused host");
            assert_eq!(s.value, 1.0, "one refused fetch, counted once");
            s.labels["reason"].as_str()
        })
        .collect();
    // Whether the refusal shows at the connection or on a pooled one is a race.
    assert!(
        matches!(counted[..], ["connect"] | ["transport"]),
        "{counted:?}"
    );
    assert_eq!(
        failed.all("xen_host_scrape_errors_total").len(),
        HOSTS * host_reasons().len()
    );

    // Counters only grow: the next healthy scrape keeps the 1.
    let after = env.scrape().await;
    assert_eq!(
        after.value("xen_host_up", &[("host_uuid", &dead.uuid)]),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "xen_host_scrape_errors_total",
            &[("host_uuid", &dead.uuid), ("reason", counted[0])]
        ),
        Some(1.0)
    );
    env.stop().await.shutdown().await;
}

#[test]
fn the_readme_lists_exactly_the_reasons_counted() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("Reasons are a fixed")
        .expect("the README's reason vocabulary");
    let paragraph = &readme[start..];
    let paragraph =
        paragraph[..paragraph.find("\n\n").unwrap_or(paragraph.len())].replace('\n', " ");
    let words = |text: &str| -> BTreeSet<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| {
                w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(str::to_string)
            .collect()
    };
    let (hosts, collector) = paragraph
        .split_once("for the collector")
        .expect("host and collector reasons");
    let host_set: BTreeSet<String> = host_reasons().into_iter().map(String::from).collect();
    assert_eq!(words(hosts), host_set, "host reasons: {paragraph}");
    let mut every: BTreeSet<String> = collector_pairs()
        .into_iter()
        .map(|(_, r)| r.to_string())
        .collect();
    every.extend(host_set);
    let mut listed = words(hosts);
    listed.extend(words(collector));
    assert_eq!(listed, every, "{paragraph}");
}

//! Failure handling against the simulator: expired sessions, dead and hanging hosts, and the
//! promise that a steady pool costs one `/rrd_updates` per host per scrape plus the event
//! stream's long polls.

use std::time::Duration;

use xapi_sim::{HostFault, SimConfig};

use crate::harness::{Scrape, TestEnv, poll_until};

#[tokio::test]
async fn invalidated_session_costs_exactly_one_new_login_and_no_failed_scrape() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await;
    let first = env.scrape().await;
    assert_eq!(
        first
            .all("xen_host_up")
            .iter()
            .filter(|s| s.value == 1.0)
            .count(),
        3
    );
    let logins = env.sim.counters().logins;
    env.sim.invalidate_sessions();
    let second = env.scrape().await;
    let up: Vec<f64> = second.all("xen_host_up").iter().map(|s| s.value).collect();
    assert_eq!(up, [1.0, 1.0, 1.0]);
    assert_eq!(env.sim.counters().logins, logins + 1);
    assert!(second.all("xen_sr_physical_size").len() > 1);
    assert!(
        second
            .all("xen_host_scrape_errors_total")
            .iter()
            .all(|s| s.value == 0.0)
    );
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_dead_host_is_down_and_the_others_are_complete() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await;
    let healthy = env.scrape().await;
    let view = env.sim.view();
    env.sim.set_host_fault(1, HostFault::Refuse);
    let response = env.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let scrape = crate::harness::Scrape::parse(&response.text().await.unwrap());
    let dead = &view.hosts[1];
    assert_eq!(
        scrape.value(
            "xen_host_up",
            &[("host", &dead.name), ("host_uuid", &dead.uuid)]
        ),
        Some(0.0)
    );
    // Every reason is a series from the first scrape; whether the refusal shows at the
    // connection or on a pooled one is a race.
    let counted = |reason| {
        scrape
            .value(
                "xen_host_scrape_errors_total",
                &[("host_uuid", &dead.uuid), ("reason", reason)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(counted("connect") + counted("transport"), 1.0);
    for alive in [&view.hosts[0], &view.hosts[2]] {
        assert_eq!(
            scrape.value("xen_host_up", &[("host_uuid", &alive.uuid)]),
            Some(1.0)
        );
        let before = healthy
            .series
            .iter()
            .filter(|s| {
                s.labels.get("host_uuid") == Some(&alive.uuid)
                    && s.name != "xen_host_scrape_duration_seconds"
            })
            .count();
        let after = scrape
            .series
            .iter()
            .filter(|s| {
                s.labels.get("host_uuid") == Some(&alive.uuid)
                    && s.name != "xen_host_scrape_duration_seconds"
            })
            .count();
        // NaN columns move between rows, so compare roughly: nothing of a live host is lost.
        assert!(
            after * 10 >= before * 9,
            "{after} series now, {before} before"
        );
    }
    assert!(
        !scrape
            .series
            .iter()
            .any(|s| s.labels.get("host_uuid") == Some(&dead.uuid)
                && s.name.starts_with("xen_vm_")
                && !crate::harness::is_record_family(&s.name))
    );
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_hanging_host_does_not_delay_the_scrape_past_its_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(3);
    let env = TestEnv::start_with(
        SimConfig {
            hosts: 2,
            ..SimConfig::default()
        },
        |config| config.timeout = TIMEOUT,
    )
    .await;
    env.scrape().await;
    // The host hangs until the test lifts the fault, so only the timeout can end its wait.
    env.sim.set_host_fault(1, HostFault::Hang);
    let started = std::time::Instant::now();
    let scrape = env.scrape().await;
    let took = started.elapsed();
    // The bound is the property (`--xen.timeout` bounds the wait on a host). Waiting twice
    // (a retry) would reach it; the other timeout's worth of margin is for a busy machine.
    assert!(took < 2 * TIMEOUT, "scrape took {took:?}");
    let view = env.sim.view();
    assert_eq!(
        scrape.value("xen_host_up", &[("host_uuid", &view.hosts[1].uuid)]),
        Some(0.0)
    );
    assert_eq!(
        scrape.value(
            "xen_host_scrape_errors_total",
            &[("host_uuid", &view.hosts[1].uuid), ("reason", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("xen_host_up", &[("host_uuid", &view.hosts[0].uuid)]),
        Some(1.0)
    );
    env.sim.set_host_fault(1, HostFault::None);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_steady_pool_costs_one_rrd_read_per_host_per_scrape_and_the_event_long_polls() {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await;
    env.scrape().await;
    let warm = env.sim.counters();
    assert_eq!(warm.logins, 1);
    assert_eq!(
        warm.originators,
        [format!("xen-exporter/{}", env!("CARGO_PKG_VERSION"))]
    );
    assert_eq!(warm.rpc.get("host.get_management_interface"), None);
    env.sim.reset_counters();
    for _ in 0..100 {
        env.scrape().await;
    }
    let counters = env.sim.counters();
    assert_eq!(counters.logins, 0);
    assert_eq!(counters.rrd_updates, [100, 100, 100]);
    assert_eq!(counters.rrd_basic_auth, 0);
    assert_eq!(counters.rrd_unauthorised, 0);
    // Nothing but the event stream's long polls: no record read, no other call. Their number
    // depends on time (one per change or per 30 s wait), not on scrapes: a handful at most
    // however slowly a busy machine runs the hundred scrapes, where one per scrape would be
    // a hundred.
    let rpc: Vec<&str> = counters.rpc.keys().map(String::as_str).collect();
    assert!(rpc.is_empty() || rpc == ["event.from"], "{rpc:?}");
    let polls = counters.rpc.get("event.from").copied().unwrap_or(0);
    assert!(polls < 10, "{polls} event.from calls in 100 scrapes");
    for query in &counters.rrd_queries {
        assert!(query.contains("session_id=<session>"), "{query}");
        assert!(
            query.contains("host=true")
                && query.contains("cf=AVERAGE")
                && query.contains("json=true"),
            "{query}"
        );
    }
    let sim = env.stop().await;
    assert_eq!(sim.counters().logouts, 1, "logged out on shutdown");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_clock_skewed_host_still_yields_its_newest_row() {
    for skew in [-3600, 3600] {
        let env = TestEnv::start(SimConfig {
            hosts: 1,
            clock: xapi_sim::Clock::Real { skew_secs: skew },
            ..SimConfig::default()
        })
        .await;
        let scrape = env.scrape().await;
        assert!(
            !scrape.all("xen_host_cpu").is_empty(),
            "skew {skew}: no data"
        );
        env.stop().await.shutdown().await;
    }
}

#[tokio::test]
async fn a_vm_started_after_start_up_is_named_without_any_record_read() {
    let env = TestEnv::start(SimConfig {
        hosts: 2,
        ..SimConfig::default()
    })
    .await;
    env.scrape().await;
    env.sim.reset_counters();
    let uuid = env.sim.start_vm(1).expect("host 1 can run a VM");
    let name = env
        .sim
        .view()
        .vms
        .into_iter()
        .find(|v| v.uuid == uuid)
        .unwrap()
        .name;
    // The VM's record comes by event.from, its data by /rrd_updates: scrape until both have
    // come and every series of the new VM carries its name (one data source may be NaN in a
    // scrape). A scrape never reads records, so the ones before the event cost none either.
    poll_until("the new VM's series show, named", async || {
        let scrape = env.scrape().await;
        let names: std::collections::BTreeSet<&str> = scrape
            .series
            .iter()
            .filter(|s| s.labels.get("vm_uuid") == Some(&uuid))
            .map(|s| s.labels["vm"].as_str())
            .collect();
        match names == [name.as_str()].into_iter().collect() {
            true => Ok(()),
            false => Err(format!("names {names:?}")),
        }
    })
    .await;
    let counters = env.sim.counters();
    assert_eq!(
        counters.rpc.get("VM.get_all_records"),
        None,
        "{:?}",
        counters.rpc
    );
    env.stop().await.shutdown().await;
}

/// The SR whose data sources host `h` reports and that is local to it (type `ext`).
fn local_sr_of(env: &TestEnv, h: usize) -> String {
    let served = env.sim.last_rrd(h).unwrap();
    env.sim
        .view()
        .srs
        .into_iter()
        .find(|sr| {
            sr.sr_type == "ext"
                && served
                    .values
                    .iter()
                    .any(|(legend, _)| legend.ends_with(&format!("read_{}", &sr.uuid[..8])))
        })
        .unwrap()
        .uuid
}

#[tokio::test]
async fn an_sr_missing_from_the_records_keeps_its_prefix_or_fails_the_host_when_halting() {
    for halt in [false, true] {
        let env = TestEnv::start_with(
            SimConfig {
                hosts: 2,
                ..SimConfig::default()
            },
            |config| config.halt_on_no_uuid = halt,
        )
        .await;
        env.scrape().await;
        let sr = local_sr_of(&env, 1);
        assert!(env.sim.hide_sr(&sr));
        let view = env.sim.view();
        let prefix = &sr[..8];
        // Any of the SR's I/O series will do: a single one may be NaN this scrape.
        let prefixed = |scrape: &Scrape| {
            scrape.series.iter().any(|s| {
                s.name.starts_with("xen_host_")
                    && s.labels.get("sr_uuid").map(String::as_str) == Some(prefix)
                    && s.labels.get("sr").map(String::as_str) == Some(prefix)
            })
        };
        // The SR's removal comes by event.from: scrape until it has come, which shows as host
        // 1 failing or as its prefix. The first such scrape is the one checked, so that its
        // error counter counts one failed scrape.
        let scrape = poll_until("the SR's removal shows", async || {
            let scrape = env.scrape().await;
            let host_1_up = scrape.value("xen_host_up", &[("host_uuid", &view.hosts[1].uuid)]);
            match (halt, host_1_up, prefixed(&scrape)) {
                (true, Some(0.0), _) | (false, _, true) => Ok(scrape),
                (_, up, prefixed) => Err(format!("host 1 up {up:?}, prefix {prefixed}")),
            }
        })
        .await;
        let up = |h: usize| scrape.value("xen_host_up", &[("host_uuid", &view.hosts[h].uuid)]);
        assert_eq!(up(0), Some(1.0));
        if halt {
            assert_eq!(up(1), Some(0.0));
            assert_eq!(
                scrape.value(
                    "xen_host_scrape_errors_total",
                    &[("host_uuid", &view.hosts[1].uuid), ("reason", "unknown_sr")]
                ),
                Some(1.0)
            );
        } else {
            assert_eq!(up(1), Some(1.0));
            assert!(prefixed(&scrape), "the prefix stands in for the unknown SR");
        }
        env.stop().await.shutdown().await;
    }
}

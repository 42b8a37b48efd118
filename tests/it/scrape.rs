//! Scrapes against the simulator, asserting every series against the values the simulator
//! served: pool and host mode, every `/rrd_updates` generation, awkward names.

use std::collections::BTreeMap;

use xapi_sim::{Generation, SimConfig};
use xen_exporter::config::Mode;

use crate::harness::{Scrape, TestEnv, pool_config};

/// SR data sources whose name ends in the 8-character SR UUID prefix.
const SR_SHORT: [&str; 14] = [
    "io_throughput_total",
    "avgqu_sz",
    "inflight",
    "iops_write",
    "iops_total",
    "io_throughput_read",
    "read",
    "latency",
    "write_latency",
    "write",
    "io_throughput_write",
    "iowait",
    "read_latency",
    "iops_read",
];

/// The series a legend entry must produce, derived here independently of the exporter's
/// catalog: (family, labels that identify it besides the owner's).
fn expected(
    owner: &str,
    ds: &str,
    srs: &BTreeMap<String, String>,
) -> (String, Vec<(String, String)>) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut labels = Vec::new();
    if let Some(n) = ds.strip_prefix("cpu").filter(|n| digits(n)) {
        labels.push(("cpu".to_string(), n.to_string()));
        return (format!("xen_{owner}_cpu"), labels);
    }
    if let Some((n, state)) = ds.strip_prefix("cpu").and_then(|r| r.split_once('-'))
        && digits(n)
    {
        labels.push(("cpu".into(), n.into()));
        return (format!("xen_{owner}_cpu_{}", state.to_lowercase()), labels);
    }
    if let Some(n) = ds
        .strip_prefix("CPU")
        .and_then(|r| r.strip_suffix("-avg-freq"))
    {
        labels.push(("cpu".into(), n.into()));
        return (format!("xen_{owner}_cpu_avg_freq"), labels);
    }
    for (prefix, label) in [("pif_", "pif"), ("vif_", "vif"), ("vbd_", "vbd")] {
        if let Some((dev, rest)) = ds.strip_prefix(prefix).and_then(|r| r.split_once('_')) {
            labels.push((label.into(), dev.into()));
            return (format!("xen_{owner}_{prefix}{rest}"), labels);
        }
    }
    if let Some((base, short)) = ds.rsplit_once('_')
        && owner == "host"
        && short.len() == 8
        && SR_SHORT.contains(&base)
    {
        let full = srs
            .keys()
            .find(|u| u.starts_with(short))
            .cloned()
            .unwrap_or_else(|| short.to_string());
        labels.push(("sr_uuid".into(), full));
        return (format!("xen_host_{base}"), labels);
    }
    if let Some(rest) = ds.strip_prefix("sr_") {
        let (uuid, tail) = rest.split_at(36);
        labels.push(("sr_uuid".into(), uuid.into()));
        return (format!("xen_host_sr{tail}"), labels);
    }
    (
        format!("xen_{owner}_{}", ds.to_lowercase().replace('-', "_")),
        labels,
    )
}

/// Checks that every non-NaN value the simulator served for each host appears exactly as
/// served, with the right names, and that nothing else RRD-derived does.
fn assert_matches_served(env: &TestEnv, scrape: &Scrape, hosts: &[usize]) {
    let view = env.sim.view();
    let srs: BTreeMap<String, String> = view
        .srs
        .iter()
        .map(|s| (s.uuid.clone(), s.name.clone()))
        .collect();
    let vm_names: BTreeMap<&str, &str> = view
        .vms
        .iter()
        .map(|v| (v.uuid.as_str(), v.name.as_str()))
        .collect();
    let mut expected_count = 0;
    for &h in hosts {
        let host = &view.hosts[h];
        let served = env.sim.last_rrd(h).expect("host was asked for its RRD");
        for (legend, text) in &served.values {
            let value: f64 = match text.as_str() {
                "NaN" | "nan" => continue,
                t => t.parse().unwrap(),
            };
            let mut parts = legend.splitn(4, ':');
            let (_cf, owner, uuid, ds) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let (family, extra) = expected(owner, ds, &srs);
            let mut labels: Vec<(String, String)> = vec![
                ("host".into(), host.name.clone()),
                ("host_uuid".into(), host.uuid.clone()),
            ];
            if owner == "vm" {
                labels.push(("vm_uuid".into(), uuid.into()));
                labels.push(("vm".into(), vm_names[uuid].into()));
            } else {
                assert_eq!(uuid, host.uuid);
            }
            for (k, v) in &extra {
                labels.push((k.clone(), v.clone()));
                if k == "sr_uuid" {
                    labels.push(("sr".into(), srs[v].clone()));
                }
            }
            let wanted: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got = scrape.value(&family, &wanted);
            assert_eq!(
                got,
                Some(value),
                "{legend} = {text} should be {family}{wanted:?}"
            );
            expected_count += 1;
        }
    }
    let rrd_series = scrape
        .series
        .iter()
        .filter(|s| {
            (s.name.starts_with("xen_host_") || s.name.starts_with("xen_vm_"))
                && !crate::harness::is_record_family(&s.name)
                && !matches!(
                    s.name.as_str(),
                    "xen_host_up"
                        | "xen_host_scrape_duration_seconds"
                        | "xen_host_scrape_errors_total"
                )
        })
        .count();
    assert_eq!(rrd_series, expected_count, "series beyond what was served");
}

fn assert_sr_capacity(env: &TestEnv, scrape: &Scrape) {
    for sr in env.sim.view().srs {
        let labels = [
            ("sr_uuid", sr.uuid.as_str()),
            ("sr", sr.name.as_str()),
            ("type", sr.sr_type.as_str()),
            ("content_type", sr.content_type.as_str()),
        ];
        assert_eq!(
            scrape.value("xen_sr_physical_size", &labels),
            Some(sr.physical_size as f64)
        );
        assert_eq!(
            scrape.value("xen_sr_physical_utilization", &labels),
            Some(sr.physical_utilisation as f64)
        );
        assert_eq!(
            scrape.value("xen_sr_virtual_allocation", &labels),
            Some(sr.virtual_allocation as f64)
        );
    }
}

async fn pool_mode_matches(generation: Generation) {
    let env = TestEnv::start(SimConfig {
        hosts: 3,
        generation,
        ..SimConfig::default()
    })
    .await;
    let scrape = env.scrape().await;
    for host in env.sim.view().hosts {
        assert_eq!(
            scrape.value(
                "xen_host_up",
                &[("host", &host.name), ("host_uuid", &host.uuid)]
            ),
            Some(1.0)
        );
    }
    assert_matches_served(&env, &scrape, &[0, 1, 2]);
    assert_sr_capacity(&env, &scrape);
    assert!(
        scrape
            .value("xen_collector_duration_seconds", &[])
            .is_some()
    );
    assert_eq!(scrape.types["xen_host_iops_total"], "untyped");
    assert_eq!(scrape.types["xen_host_cpu"], "gauge");
    assert!(scrape.help["xen_host_memory_free_kib"].contains("KiB"));
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn pool_mode_exports_every_value_served_current_generation() {
    pool_mode_matches(Generation::Current).await;
}

#[tokio::test]
async fn pool_mode_exports_every_value_served_nested_generation() {
    pool_mode_matches(Generation::Nested).await;
}

#[tokio::test]
async fn pool_mode_exports_every_value_served_legacy_generation() {
    pool_mode_matches(Generation::Legacy).await;
}

#[tokio::test]
async fn host_mode_exports_only_the_configured_host() {
    let sim = xapi_sim::Sim::start(SimConfig {
        hosts: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let config = pool_config(&sim, Mode::Host);
    let env = TestEnv::start_exporter(sim, config).await;
    let scrape = env.scrape().await;
    let view = env.sim.view();
    assert_eq!(scrape.all("xen_host_up").len(), 1);
    assert_eq!(
        scrape.value("xen_host_up", &[("host_uuid", &view.hosts[0].uuid)]),
        Some(1.0)
    );
    assert_matches_served(&env, &scrape, &[0]);
    assert_eq!(env.sim.counters().rrd_updates[1..], [0, 0]);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn host_mode_on_a_member_reads_that_member_after_following_host_is_slave() {
    let sim = xapi_sim::Sim::start(SimConfig {
        hosts: 2,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut config = pool_config(&sim, Mode::Host);
    config.endpoint = xen_exporter::config::Endpoint::parse(&sim.host_url(1)).unwrap();
    let env = TestEnv::start_exporter(sim, config).await;
    let scrape = env.scrape().await;
    let view = env.sim.view();
    assert_eq!(
        scrape.value(
            "xen_host_up",
            &[
                ("host", &view.hosts[1].name),
                ("host_uuid", &view.hosts[1].uuid)
            ]
        ),
        Some(1.0)
    );
    assert_matches_served(&env, &scrape, &[1]);
    let counters = env.sim.counters();
    assert_eq!(counters.logins, 1, "one login, at the master");
    assert_eq!(counters.rrd_updates[0], 0, "the master's RRD is not read");
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn awkward_and_duplicate_vm_names_are_escaped_and_kept_apart() {
    let names = [
        "quote\"d",
        "back\\slash",
        "new\nline",
        "ünïcødé ☃",
        "twin",
        "twin",
    ];
    let env = TestEnv::start(SimConfig {
        hosts: 1,
        vms_per_host: names.len(),
        vm_names: names.iter().map(|s| s.to_string()).collect(),
        ..SimConfig::default()
    })
    .await;
    let scrape = env.scrape().await;
    // Look at every VM series: any single data source may be NaN in a given scrape.
    let vm_series: Vec<_> = scrape
        .series
        .iter()
        .filter(|s| s.name.starts_with("xen_vm_"))
        .collect();
    for name in names {
        assert!(
            vm_series.iter().any(|s| s.labels["vm"] == name),
            "{name:?} missing"
        );
    }
    let twins: std::collections::BTreeSet<&str> = vm_series
        .iter()
        .filter(|s| s.labels["vm"] == "twin")
        .map(|s| s.labels["vm_uuid"].as_str())
        .collect();
    assert_eq!(twins.len(), 2, "two VMs named twin, two identities");
    assert_matches_served(&env, &scrape, &[0]);
    env.stop().await.shutdown().await;
}

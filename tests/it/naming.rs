//! `XEN_METRICS_NAMING=prometheus` against the simulator: names in base units and only
//! counters ending in `_total`, values converted from exactly what the hosts served, nothing
//! lost or doubled against the compatible naming, and `promtool check metrics` content.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use xapi_sim::{Clock, Sim, SimConfig};
use xen_exporter::config::{Mode, Naming};
use xen_exporter::metrics::catalog;

use crate::harness::{Scrape, Series, TestEnv, is_record_family, pool_config};

/// Starts an exporter with `naming` next to `sim`.
async fn exporter(sim: &Sim, naming: Naming) -> TestEnv {
    let mut config = pool_config(sim, Mode::Pool);
    config.naming = naming;
    TestEnv::start_exporter(sim.clone(), config).await
}

fn sim_config() -> SimConfig {
    SimConfig {
        hosts: 2,
        nan_ratio: 0.0,
        ..SimConfig::default()
    }
}

/// Series from `/rrd_updates`: host and VM families not derived from records, nor the
/// exporter's own per-host ones.
fn is_rrd(series: &Series) -> bool {
    (series.name.starts_with("xen_host_") || series.name.starts_with("xen_vm_"))
        && !is_record_family(&series.name)
        && !matches!(
            series.name.as_str(),
            "xen_host_up" | "xen_host_scrape_duration_seconds" | "xen_host_scrape_errors_total"
        )
}

/// The value a host served for its own data source `ds` (host-owned, so the host UUID).
fn served(sim: &Sim, host: usize, ds: &str) -> f64 {
    let uuid = &sim.view().hosts[host].uuid;
    let entry = format!("AVERAGE:host:{uuid}:{ds}");
    let row = sim.last_rrd(host).expect("the host served a row");
    let (_, text) = row
        .values
        .iter()
        .find(|(legend, _)| *legend == entry)
        .unwrap_or_else(|| panic!("{entry} was not served"));
    text.parse().unwrap()
}

/// Fails the test when promtool finds anything in `text`; says so and returns when promtool
/// is not installed, unless CI requires it (`XEN_EXPORTER_REQUIRE_PROMETHEUS`).
fn promtool_finds_nothing(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(_) => {
            assert!(
                std::env::var_os("XEN_EXPORTER_REQUIRE_PROMETHEUS").is_none(),
                "promtool is not installed but CI requires this check"
            );
            eprintln!("note: promtool not installed; the exposition is not checked with it");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

#[tokio::test]
async fn prometheus_naming_has_base_units_and_converts_what_was_served() {
    let sim = Sim::start(sim_config()).await.unwrap();
    let env = exporter(&sim, Naming::Prometheus).await;
    let text = env.get("/metrics").await.text().await.unwrap();
    // Strict: HELP and TYPE for every family, no duplicate series.
    let scrape = Scrape::parse(&text);

    let mut rrd_families = 0;
    for (family, kind) in &scrape.types {
        let tokens: Vec<&str> = family.split('_').collect();
        for unit in ["kib", "mib", "ms", "us", "percent"] {
            assert!(!tokens.contains(&unit), "{family} has the unit {unit}");
        }
        if family.ends_with("_total") {
            assert_eq!(kind, "counter", "{family} ends in _total");
        }
        assert!(!family.ends_with("_count"), "{family}");
        // The help of an RRD family names its data source and says the unit the name does.
        let help = scrape.help[family].to_lowercase();
        if !help.contains("(rrd ") {
            continue;
        }
        rrd_families += 1;
        let says = if family.ends_with("_bytes_per_second") {
            help.contains("b/s") || help.contains("bytes per second")
        } else if family.ends_with("_bytes") {
            help.contains("bytes")
        } else if family.ends_with("_seconds") {
            help.contains("seconds") || help.contains("unix time")
        } else if family.ends_with("_hertz") {
            help.contains("hertz")
        } else if family.ends_with("_ratio") {
            help.contains("fraction") || help.contains("share") || help.contains("0–1")
        } else {
            true
        };
        assert!(says, "{family}: {help}");
    }
    let rrd_series = scrape.series.iter().filter(|s| is_rrd(s));
    let mut rrd_names: Vec<&str> = rrd_series.map(|s| s.name.as_str()).collect();
    rrd_names.dedup();
    assert_eq!(
        rrd_families,
        rrd_names.len(),
        "every RRD family names its source"
    );

    let view = sim.view();
    for (h, host) in view.hosts.iter().enumerate() {
        let on_host = [("host_uuid", host.uuid.as_str())];
        let free = scrape.value("xen_host_memory_free_bytes", &on_host);
        assert_eq!(free, Some(served(&sim, h, "memory_free_kib") * 1024.0));
        assert_eq!(
            scrape.value("xen_host_memory_total_bytes", &on_host),
            Some(host.memory_total as f64),
            "the record family stays"
        );
        let row = sim.last_rrd(h).unwrap();
        let mut latencies = 0;
        for (legend, text) in &row.values {
            let mut fields = legend.splitn(4, ':');
            let (owner, uuid, ds) = (
                fields.nth(1).unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap(),
            );
            let micros: f64 = text.parse().unwrap();
            if let Some(sr8) = ds.strip_prefix("read_latency_") {
                let sr = view.srs.iter().find(|s| s.uuid.starts_with(sr8)).unwrap();
                let labels = [("host_uuid", uuid), ("sr_uuid", sr.uuid.as_str())];
                let seconds = scrape.value("xen_host_read_latency_seconds", &labels);
                assert_eq!(seconds, Some(micros / 1e6), "{legend} = {text} μs");
                latencies += 1;
            } else if owner == "vm"
                && let Some(vbd) = ds
                    .strip_prefix("vbd_")
                    .and_then(|d| d.strip_suffix("_write_latency"))
            {
                let labels = [("vm_uuid", uuid), ("vbd", vbd)];
                let seconds = scrape.value("xen_vm_vbd_write_latency_seconds", &labels);
                assert_eq!(seconds, Some(micros / 1e6), "{legend} = {text} μs");
                latencies += 1;
            }
        }
        assert!(latencies > 1, "host {h} served latencies");
    }

    // Every value served is exported once, but memory_total_kib (one per host), which the
    // record family carries.
    let served_values: usize = (0..view.hosts.len())
        .map(|h| sim.last_rrd(h).unwrap().values.len())
        .sum();
    let exported = scrape.series.iter().filter(|s| is_rrd(s)).count();
    assert_eq!(exported, served_values - view.hosts.len());

    promtool_finds_nothing(&text);
    env.stop().await.shutdown().await;
}

/// What a factor the compatible help text announces the Prometheus value is: the unit it
/// says, as XAPI declares it.
fn factor_in(help: &str) -> f64 {
    if help.contains("in KiB") {
        1024.0
    } else if help.contains("in MiB/s") {
        1_048_576.0
    } else if help.contains("in MHz") {
        1e6
    } else if help.contains("in μs") {
        1e-6
    } else {
        1.0
    }
}

#[tokio::test]
async fn both_namings_export_the_same_series_in_their_own_units() {
    // A frozen clock: both exporters are served the same values.
    let sim = Sim::start(SimConfig {
        clock: Clock::Frozen(1_767_225_607),
        ..sim_config()
    })
    .await
    .unwrap();
    let compatible_env = exporter(&sim, Naming::Compatible).await;
    let compatible = compatible_env.scrape().await;
    compatible_env.stop().await;
    let prometheus_env = exporter(&sim, Naming::Prometheus).await;
    let prometheus = prometheus_env.scrape().await;
    prometheus_env.stop().await;

    let by_key: BTreeMap<(&str, &BTreeMap<String, String>), f64> = prometheus
        .series
        .iter()
        .map(|s| ((s.name.as_str(), &s.labels), s.value))
        .collect();
    let mut matched = 0;
    for series in compatible.series.iter().filter(|s| is_rrd(s)) {
        let name = catalog::rename(
            catalog::Naming::Prometheus,
            std::borrow::Cow::Owned(series.name.clone()),
        );
        let Some(name) = name else {
            assert_eq!(series.name, "xen_host_memory_total_kib");
            continue;
        };
        let factor = factor_in(&compatible.help[&series.name]);
        let value = by_key
            .get(&(name.family.as_ref(), &series.labels))
            .unwrap_or_else(|| panic!("{} {:?} has no counterpart", series.name, series.labels));
        let expected = if factor < 1.0 {
            series.value / 1e6
        } else {
            series.value * factor
        };
        assert_eq!(*value, expected, "{} {:?}", series.name, series.labels);
        matched += 1;
    }
    let exported = prometheus.series.iter().filter(|s| is_rrd(s)).count();
    assert_eq!(matched, exported, "nothing beyond the compatible series");
    assert!(matched > 100, "{matched}");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unknown_data_source_keeps_its_name_and_says_the_unit_xapi_declares() {
    let sim = Sim::start(sim_config()).await.unwrap();
    // A plugin the catalog does not know, installed before the exporter's first full read.
    assert!(sim.add_host_data_source(0, "GPU0-Power.draw", "W"));
    let family = "xen_host_gpu0_power_draw";

    let env = exporter(&sim, Naming::Compatible).await;
    let compatible = env.scrape().await;
    env.stop().await;
    let asked = |sim: &Sim| sim.counters().rpc.get("host.get_data_sources").copied();
    assert_eq!(
        asked(&sim),
        None,
        "the compatible naming does not ask for units"
    );
    assert!(
        compatible.help[family].contains("(see host.get_data_sources)"),
        "{}",
        compatible.help[family]
    );

    let env = exporter(&sim, Naming::Prometheus).await;
    let scrape = env.scrape().await;
    assert_eq!(asked(&sim), Some(2), "one call per host at the full read");
    let help = &scrape.help[family];
    assert!(
        help.contains("unconverted, in \"W\", the unit XAPI declares for it"),
        "{help}"
    );
    assert_eq!(scrape.types[family], "gauge");
    let host = &sim.view().hosts[0];
    assert_eq!(
        scrape.value(family, &[("host_uuid", host.uuid.as_str())]),
        Some(served(&sim, 0, "GPU0-Power.draw")),
        "the value as served"
    );
    env.stop().await.shutdown().await;
}

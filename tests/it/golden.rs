//! Golden expositions: a frozen simulated pool scraped in both formats and compared byte for
//! byte with `tests/golden/*` (rewrite with `UPDATE_GOLDEN=1`), and in the text format under
//! the Prometheus naming. CI lints the same files with `promtool check metrics`.

use std::path::Path;

use xapi_sim::{Clock, SimConfig};

use xen_exporter::config::Naming;

use crate::harness::TestEnv;

/// Timings, wall-clock times, request counts and the hosts' loopback addresses (picked free at start) differ run to run;
/// everything else is a function of the seed and the frozen clock.
fn normalise(text: &str) -> String {
    text.lines()
        // Whether the first event long poll has returned by the time of the scrape is a race.
        .filter(|line| {
            !(line.starts_with("xen_exporter_xapi_request") && line.contains("kind=\"event\""))
        })
        .map(|line| {
            let line = mask_address(line);
            let line = line.as_str();
            // Request counts too: how many event long polls ran depends on timing.
            let is_timing = line.starts_with("xen_collector_duration_seconds")
                || line.starts_with("xen_host_scrape_duration_seconds")
                || line.starts_with("xen_exporter_xapi_request")
                || line.starts_with("xen_pool_last_success_timestamp_seconds")
                || line.starts_with("xen_pool_collection_duration_seconds");
            match line.rsplit_once(' ') {
                Some((series, _)) if is_timing => format!("{series} 0.001\n"),
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

/// `address="127.a.b.c"` → `address="127.0.0.x"` with the last octet kept.
fn mask_address(line: &str) -> String {
    let Some(start) = line.find("address=\"127.") else {
        return line.to_string();
    };
    let value = start + "address=\"".len();
    let end = value + line[value..].find('"').unwrap_or(0);
    let host = line[value..end].rsplit('.').next().unwrap_or("");
    format!("{}127.0.0.{host}{}", &line[..value], &line[end..])
}

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{name} differs from the golden file at line {}:\n--- expected\n{}\n--- actual\n{}\n(run with UPDATE_GOLDEN=1 to accept)",
            first + 1,
            expected.lines().nth(first).unwrap_or("<end>"),
            actual.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

/// The frozen pool every golden file is a scrape of.
fn frozen_pool() -> SimConfig {
    SimConfig {
        hosts: 2,
        clock: Clock::Frozen(1_767_225_607),
        vm_names: vec![
            "web \"frontend\"".into(),
            "db\\primary".into(),
            "ünïcødé".into(),
        ],
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn frozen_pool_matches_the_golden_expositions() {
    let env = TestEnv::start(frozen_pool()).await;
    let text = env.get("/metrics").await.text().await.unwrap();
    check("pool.prom", &normalise(&text));
    let om = env
        .get_with(
            "/metrics",
            &[("accept", "application/openmetrics-text; version=1.0.0")],
        )
        .await
        .text()
        .await
        .unwrap();
    check("pool.openmetrics.txt", &normalise(&om));
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn frozen_pool_matches_the_golden_exposition_under_prometheus_naming() {
    let env = TestEnv::start_with(frozen_pool(), |pool| pool.naming = Naming::Prometheus).await;
    let text = env.get("/metrics").await.text().await.unwrap();
    check("pool.prometheus.prom", &normalise(&text));
    env.stop().await.shutdown().await;
}

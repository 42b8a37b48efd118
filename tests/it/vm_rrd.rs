//! `--collector.vm-rrd false`: each host's `/rrd_updates` asks for no VM, on both of xapi's
//! readings of `vm_uuid` (before and from 26.7), and dom0 sends a fraction of the bytes; the
//! VM families from records stay.

use xapi_sim::{Clock, Sim, SimConfig, VmUuidFilter};

use crate::harness::{Scrape, TestEnv, is_record_family, pool_config};
use xen_exporter::config::Mode;

/// One scrape by an exporter with `vm_rrd` as given: the exposition, the bytes of the
/// `/rrd_updates` body the host served for it, and the legend of that body's newest row.
async fn scrape_once(sim: &Sim, vm_rrd: bool) -> (Scrape, u64, Vec<String>) {
    let mut config = pool_config(sim, Mode::Pool);
    config.collectors.vm_rrd = vm_rrd;
    let env = TestEnv::start_exporter(sim.clone(), config).await;
    let before = sim.counters();
    let scrape = env.scrape().await;
    let after = sim.counters();
    assert_eq!(
        after.rrd_updates[0],
        before.rrd_updates[0] + 1,
        "one request per host per scrape"
    );
    let bytes = after.rrd_bytes[0] - before.rrd_bytes[0];
    let legend = sim
        .last_rrd(0)
        .expect("the host served a row")
        .values
        .into_iter()
        .map(|(legend, _)| legend)
        .collect();
    env.stop().await;
    (scrape, bytes, legend)
}

/// RRD families of VMs in a scrape: `xen_vm_*` not derived from records.
fn vm_rrd_families(scrape: &Scrape) -> Vec<&str> {
    let mut names: Vec<&str> = scrape
        .series
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("xen_vm_") && !is_record_family(n))
        .collect();
    names.dedup();
    names
}

/// Also the measurement the README quotes (simulated: one host of 20 guests plus dom0, a
/// frozen clock, so the figures repeat):
/// `cargo test --locked --test it vm_rrd -- --nocapture`.
#[tokio::test]
async fn without_vm_rrd_no_vm_is_asked_for_and_the_bodies_shrink() {
    for filter in [VmUuidFilter::Single, VmUuidFilter::Literal] {
        let sim = Sim::start(SimConfig {
            hosts: 1,
            vms_per_host: 20,
            clock: Clock::Frozen(1_767_225_607),
            vm_uuid_filter: filter,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");

        let (with, with_bytes, with_legend) = scrape_once(&sim, true).await;
        assert!(with_legend.iter().any(|l| l.starts_with("AVERAGE:vm:")));
        assert!(!vm_rrd_families(&with).is_empty());

        let (without, without_bytes, without_legend) = scrape_once(&sim, false).await;
        let query = sim.counters().rrd_queries.pop().unwrap();
        assert!(
            query.contains("host=true") && query.contains("vm_uuid="),
            "{query}"
        );
        assert!(
            without_legend
                .iter()
                .all(|l| l.starts_with("AVERAGE:host:")),
            "{filter:?}: {without_legend:?}"
        );
        assert_eq!(vm_rrd_families(&without), Vec::<&str>::new(), "{filter:?}");
        // The host's own series and the VMs' record families stay.
        assert_eq!(without.all("xen_host_up")[0].value, 1.0);
        assert!(!without.all("xen_host_cpu_avg").is_empty());
        assert_eq!(
            without.all("xen_vm_power_state").len(),
            with.all("xen_vm_power_state").len()
        );
        assert!(without.all("xen_vm_power_state").len() > 20);

        let saved = 1.0 - without_bytes as f64 / with_bytes as f64;
        eprintln!(
            "{filter:?}: /rrd_updates of one 20-VM host: {with_bytes} bytes with VM RRDs, \
             {without_bytes} without ({:.0} % less)",
            saved * 100.0
        );
        assert!(saved >= 0.6, "{filter:?}: {with_bytes} → {without_bytes}");
        sim.shutdown().await;
    }
}

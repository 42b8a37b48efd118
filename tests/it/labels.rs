//! `XEN_HASH_UUIDS`: with a key, no UUID of the pool reaches the exposition; each one is
//! replaced by the same 32-hex-digit keyed hash wherever it appears, so joins across
//! families keep working, and the hashes are stable from scrape to scrape.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use xapi_sim::SimConfig;
use xen_exporter::config::SecretBytes;

use crate::harness::{Scrape, TestEnv};

const KEY: &[u8] = b"labels-test-key-0123456789";

fn expected_hash(uuid: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY).unwrap();
    mac.update(uuid.as_bytes());
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn hashed_uuids_hide_every_uuid_and_still_join() {
    let env = TestEnv::start_with(SimConfig::default(), |config| {
        config.hash_uuids_key = Some(SecretBytes::new(KEY));
    })
    .await;
    let view = env.sim.view();
    let mut uuids = vec![view.pool_uuid.clone()];
    uuids.extend(view.hosts.iter().map(|h| h.uuid.clone()));
    uuids.extend(view.vms.iter().map(|v| v.uuid.clone()));
    uuids.extend(view.srs.iter().map(|s| s.uuid.clone()));
    uuids.extend(view.pbds.iter().map(|p| p.uuid.clone()));

    let text = env.get("/metrics").await.text().await.unwrap();
    for uuid in &uuids {
        assert!(!text.contains(uuid.as_str()), "{uuid} shows");
        assert!(!text.contains(&uuid[..8]), "a prefix of {uuid} shows");
    }
    let scrape = Scrape::parse(&text);
    let mut hashed = 0;
    for series in &scrape.series {
        for (name, value) in &series.labels {
            if name.ends_with("_uuid") && !value.is_empty() {
                assert_eq!(value.len(), 32, "{name}={value}");
                assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{value}");
                hashed += 1;
            }
        }
    }
    assert!(hashed > 100, "{hashed} hashed labels");

    // The same VM has the same hash in record-derived and RRD families.
    let vm = view
        .vms
        .iter()
        .find(|v| v.resident_on.is_some() && !v.is_control_domain)
        .unwrap();
    let info = scrape
        .all("xen_vm_info")
        .into_iter()
        .find(|s| s.labels["vm"] == vm.name)
        .unwrap();
    assert_eq!(info.labels["vm_uuid"], expected_hash(&vm.uuid));
    let cpu = scrape
        .all("xen_vm_memory")
        .into_iter()
        .chain(scrape.all("xen_vm_cpu"))
        .find(|s| s.labels["vm"] == vm.name)
        .expect("an RRD family of the VM");
    assert_eq!(cpu.labels["vm_uuid"], info.labels["vm_uuid"]);
    let host = &view.hosts[view.master];
    assert_eq!(
        scrape.value(
            "xen_host_up",
            &[("host_uuid", expected_hash(&host.uuid).as_str())]
        ),
        Some(1.0)
    );

    let again = Scrape::parse(&env.get("/metrics").await.text().await.unwrap());
    let ids = |s: &Scrape| {
        let mut v: Vec<String> = s
            .all("xen_vm_info")
            .iter()
            .map(|s| s.labels["vm_uuid"].clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&scrape), ids(&again), "stable across scrapes");
    env.stop().await.shutdown().await;
}

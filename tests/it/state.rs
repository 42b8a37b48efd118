//! Record-derived families against the simulator, kept live by `event.from`: PBDs, multipath,
//! storage targets, VM/host/pool state; changes made in the simulator between two scrapes
//! show at the next one, and a lost event stream recovers by itself.

use std::collections::BTreeSet;
use std::time::Duration;

use xapi_sim::{PoolView, SimConfig};

use crate::harness::{Scrape, TestEnv, poll_within};

async fn start(hosts: usize) -> TestEnv {
    TestEnv::start(SimConfig {
        hosts,
        vms_per_host: 2,
        halted_vms: 2,
        templates: 2,
        ..SimConfig::default()
    })
    .await
}

fn sr_of_type(view: &PoolView, sr_type: &str) -> String {
    view.srs
        .iter()
        .find(|s| s.sr_type == sr_type)
        .unwrap_or_else(|| panic!("the simulator has a {sr_type} SR"))
        .uuid
        .clone()
}

fn pbd_config<'a>(view: &'a PoolView, sr: &str, host: usize, key: &str) -> &'a str {
    let pbd = view
        .pbds
        .iter()
        .find(|p| p.sr_uuid == sr && p.host == host)
        .expect("PBD exists");
    pbd.device_config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("device_config has {key}"))
}

/// Waits until the simulator has served `method` more than `before` times. The bound is
/// under the exporter's 30 s long poll, which would bring a new call by itself: meeting it
/// shows that the exporter reacted to what the test did.
async fn wait_for_calls(env: &TestEnv, method: &str, before: u64, why: &str) {
    let what = format!("{why}: {method} is called again");
    poll_within(Duration::from_secs(20), &what, async || {
        let counters = env.sim.counters();
        match counters.rpc.get(method).copied().unwrap_or(0) > before {
            true => Ok(()),
            false => Err(format!("{:?}", counters.rpc)),
        }
    })
    .await;
}

fn series_of_vm<'a>(scrape: &'a Scrape, uuid: &str) -> Vec<&'a crate::harness::Series> {
    scrape
        .series
        .iter()
        .filter(|s| s.labels.get("vm_uuid").map(String::as_str) == Some(uuid))
        .collect()
}

#[tokio::test]
async fn a_detached_pbd_shows_0_at_the_next_scrape() {
    let env = start(3).await;
    let view = env.sim.view();
    let sr = sr_of_type(&view, "lvmoiscsi");
    let host = &view.hosts[1];
    let attached = |s: &Scrape| {
        s.value(
            "xen_pbd_attached",
            &[("sr_uuid", &sr), ("host_uuid", &host.uuid)],
        )
    };
    let before = env.scrape().await;
    assert_eq!(attached(&before), Some(1.0));
    assert_eq!(
        before.all("xen_pbd_attached").len(),
        view.pbds.len(),
        "one series per PBD"
    );
    assert!(env.sim.set_pbd_attached(&sr, 1, false));
    let after = env
        .scrape_until("the PBD shows detached", |s| match attached(s) {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
    let series = after
        .all("xen_pbd_attached")
        .into_iter()
        .find(|s| s.labels["sr_uuid"] == sr && s.labels["host_uuid"] == host.uuid)
        .unwrap();
    assert_eq!(series.labels["host"], host.name);
    assert_eq!(series.labels["type"], "lvmoiscsi");
    let up = after
        .all("xen_pbd_attached")
        .iter()
        .filter(|s| s.value == 1.0)
        .count();
    assert_eq!(up, view.pbds.len() - 1);
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn lost_multipath_paths_show_as_active_below_max() {
    let env = start(2).await;
    let view = env.sim.view();
    let sr = sr_of_type(&view, "lvmohba");
    let scsi_id = pbd_config(&view, &sr, 1, "SCSIid").to_string();
    let host = view.hosts[1].uuid.clone();
    let paths = |s: &Scrape, family: &str| {
        s.value(
            family,
            &[
                ("sr_uuid", &sr),
                ("host_uuid", &host),
                ("scsi_id", &scsi_id),
            ],
        )
    };
    let before = env.scrape().await;
    assert_eq!(paths(&before, "xen_sr_multipath_paths"), Some(4.0));
    assert_eq!(paths(&before, "xen_sr_multipath_paths_max"), Some(4.0));
    assert_eq!(
        before.value("xen_sr_multipath_active", &[("sr_uuid", &sr)]),
        Some(1.0)
    );
    assert!(env.sim.set_multipath_paths(&sr, 1, 2, 4));
    let after = env
        .scrape_until("two paths of four show", |s| {
            match paths(s, "xen_sr_multipath_paths") {
                Some(2.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert_eq!(paths(&after, "xen_sr_multipath_paths_max"), Some(4.0));
    // The other host's paths are untouched.
    let other = view.hosts[0].uuid.clone();
    assert_eq!(
        after.value(
            "xen_sr_multipath_paths",
            &[
                ("sr_uuid", &sr),
                ("host_uuid", &other),
                ("scsi_id", &scsi_id)
            ]
        ),
        Some(4.0)
    );
    for h in &view.hosts {
        assert_eq!(
            after.value("xen_host_multipath_enabled", &[("host_uuid", &h.uuid)]),
            Some(if h.multipathing { 1.0 } else { 0.0 })
        );
    }
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn iscsi_nfs_and_hba_srs_produce_their_target_info_and_no_secret() {
    let env = start(2).await;
    let view = env.sim.view();
    let response = env.get("/metrics").await;
    let text = response.text().await.unwrap();
    let scrape = Scrape::parse(&text);

    let iscsi = sr_of_type(&view, "lvmoiscsi");
    assert_eq!(
        scrape.value(
            "xen_sr_iscsi_target_info",
            &[
                ("sr_uuid", &iscsi),
                ("target", pbd_config(&view, &iscsi, 0, "target")),
                ("iqn", pbd_config(&view, &iscsi, 0, "targetIQN")),
                ("port", pbd_config(&view, &iscsi, 0, "port")),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.all("xen_sr_iscsi_target_info").len(),
        1,
        "one series per SR, not per PBD"
    );
    let nfs = sr_of_type(&view, "nfs");
    assert_eq!(
        scrape.value(
            "xen_sr_nfs_target_info",
            &[
                ("sr_uuid", &nfs),
                ("server", pbd_config(&view, &nfs, 0, "server")),
                ("path", pbd_config(&view, &nfs, 0, "serverpath")),
            ]
        ),
        Some(1.0)
    );
    let hba = sr_of_type(&view, "lvmohba");
    assert_eq!(
        scrape.value(
            "xen_sr_fc_info",
            &[
                ("sr_uuid", &hba),
                ("scsi_id", pbd_config(&view, &hba, 0, "SCSIid"))
            ]
        ),
        Some(1.0)
    );
    // Nothing from device_config beyond the target keys, CHAP secrets above all.
    for pbd in &view.pbds {
        for (key, value) in &pbd.device_config {
            if key.to_ascii_lowercase().contains("chap") || key.contains("secret") {
                assert!(!text.contains(value.as_str()), "{key} leaked");
            }
        }
    }
    assert!(!text.to_ascii_lowercase().contains("chap"));
    for sr in &view.srs {
        assert_eq!(
            scrape.value("xen_sr_vdis", &[("sr_uuid", &sr.uuid)]),
            Some(sr.vdis as f64),
            "{}",
            sr.name
        );
        assert_eq!(
            scrape.value(
                "xen_sr_info",
                &[
                    ("sr_uuid", &sr.uuid),
                    ("type", &sr.sr_type),
                    ("shared", if sr.shared { "true" } else { "false" })
                ]
            ),
            Some(1.0)
        );
    }
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn vm_state_covers_halted_vms_and_dom0_and_skips_templates_and_snapshots() {
    let env = start(2).await;
    let view = env.sim.view();
    let scrape = env.scrape().await;
    let exported: BTreeSet<&str> = scrape
        .all("xen_vm_power_state")
        .iter()
        .map(|s| s.labels["vm_uuid"].as_str())
        .collect();
    let mut halted = 0;
    for vm in &view.vms {
        if vm.is_a_template || vm.is_a_snapshot {
            assert!(!exported.contains(vm.uuid.as_str()), "{} exported", vm.name);
            assert!(series_of_vm(&scrape, &vm.uuid).is_empty());
            continue;
        }
        let state = vm.power_state.to_ascii_lowercase();
        assert_eq!(
            scrape.value(
                "xen_vm_power_state",
                &[("vm_uuid", &vm.uuid), ("state", &state)]
            ),
            Some(1.0),
            "{}",
            vm.name
        );
        let info = scrape
            .all("xen_vm_info")
            .into_iter()
            .find(|s| s.labels["vm_uuid"] == vm.uuid)
            .unwrap();
        assert_eq!(info.labels["vm"], vm.name);
        assert_eq!(
            info.labels["is_control_domain"],
            vm.is_control_domain.to_string()
        );
        assert_eq!(info.labels["domain_type"], vm.domain_type);
        assert_eq!(
            info.labels["os"],
            vm.os_name.clone().unwrap_or_default(),
            "{}",
            vm.name
        );
        let one = |family: &str| scrape.value(family, &[("vm_uuid", &vm.uuid)]);
        assert_eq!(
            one("xen_vm_memory_static_max_bytes"),
            Some(vm.memory_static_max as f64)
        );
        assert_eq!(
            one("xen_vm_memory_dynamic_min_bytes"),
            Some(vm.memory_dynamic_min as f64)
        );
        assert_eq!(one("xen_vm_vcpus"), Some(vm.vcpus as f64));
        match vm.resident_on {
            Some(h) => {
                assert_eq!(info.labels["host_uuid"], view.hosts[h].uuid);
                assert_eq!(one("xen_vm_start_time_seconds"), Some(vm.start_time as f64));
            }
            None => {
                halted += 1;
                assert_eq!(state, "halted");
                assert_eq!(info.labels["host"], "");
                assert_eq!(one("xen_vm_start_time_seconds"), None);
            }
        }
    }
    assert_eq!(halted, 2);
    let dom0s = scrape
        .all("xen_vm_info")
        .iter()
        .filter(|s| s.labels["is_control_domain"] == "true")
        .count();
    assert_eq!(dom0s, view.hosts.len());
    for h in &view.hosts {
        let running = view
            .vms
            .iter()
            .filter(|v| {
                v.power_state == "Running"
                    && v.resident_on.map(|r| view.hosts[r].uuid == h.uuid) == Some(true)
                    && !v.is_control_domain
                    && !v.is_a_template
                    && !v.is_a_snapshot
            })
            .count();
        assert_eq!(
            scrape.value("xen_host_running_vms", &[("host_uuid", &h.uuid)]),
            Some(running as f64)
        );
    }
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn host_and_pool_state_and_host_maintenance() {
    let env = start(3).await;
    let view = env.sim.view();
    let scrape = env.scrape().await;
    for h in &view.hosts {
        let one = |family: &str| scrape.value(family, &[("host_uuid", &h.uuid)]);
        assert_eq!(one("xen_host_enabled"), Some(1.0));
        assert_eq!(one("xen_host_live"), Some(1.0));
        assert_eq!(
            one("xen_host_memory_total_bytes"),
            Some(h.memory_total as f64)
        );
        assert_eq!(one("xen_host_cpus"), Some(h.cpu_count as f64));
        assert_eq!(
            scrape.value(
                "xen_host_info",
                &[
                    ("host_uuid", &h.uuid),
                    ("host", &h.name),
                    ("address", &h.address),
                    ("product_version", &h.product_version),
                    ("xen_version", &h.xen_version),
                    ("cpu_model", &h.cpu_model),
                ]
            ),
            Some(1.0)
        );
    }
    let master = &view.hosts[view.master];
    let default_sr = view.srs.iter().find(|s| s.uuid == view.default_sr).unwrap();
    assert_eq!(
        scrape.value(
            "xen_pool_info",
            &[
                ("pool", &view.pool_name),
                ("pool_uuid", &view.pool_uuid),
                ("master", &master.name),
                ("master_uuid", &master.uuid),
                ("default_sr", &default_sr.name),
                ("default_sr_uuid", &default_sr.uuid),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("xen_pool_hosts", &[("pool_uuid", &view.pool_uuid)]),
        Some(3.0)
    );
    assert_eq!(
        scrape.value("xen_pool_ha_enabled", &[("pool_uuid", &view.pool_uuid)]),
        Some(if view.ha_enabled { 1.0 } else { 0.0 })
    );

    env.sim.set_host_enabled(2, false);
    env.sim.set_host_live(2, false);
    let uuid = &view.hosts[2].uuid;
    // Two changes, maybe in two event batches: wait for both.
    let after = env
        .scrape_until("host 2 shows disabled and not live", |s| {
            let flags = (
                s.value("xen_host_enabled", &[("host_uuid", uuid)]),
                s.value("xen_host_live", &[("host_uuid", uuid)]),
            );
            match flags {
                (Some(0.0), Some(0.0)) => Ok(()),
                other => Err(format!("(enabled, live) = {other:?}")),
            }
        })
        .await;
    assert_eq!(
        after.value("xen_host_enabled", &[("host_uuid", &view.hosts[1].uuid)]),
        Some(1.0)
    );
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn renamed_added_removed_and_migrated_vms_show_at_the_next_scrape_without_stale_series() {
    let env = start(2).await;
    let view = env.sim.view();
    let guests: Vec<_> = view
        .vms
        .iter()
        .filter(|v| {
            v.power_state == "Running"
                && !v.is_control_domain
                && !v.is_a_template
                && !v.is_a_snapshot
        })
        .cloned()
        .collect();
    let on = |h: usize| guests.iter().filter(move |v| v.resident_on == Some(h));
    let migrated = on(0).next().unwrap().clone();
    let renamed = on(0).nth(1).unwrap().clone();
    let removed = on(1).next().unwrap().clone();
    env.scrape().await;
    // From before the changes: no RPC may be needed to learn any of them.
    env.sim.reset_counters();

    env.sim.set_vm_name(&renamed.uuid, "renamed \"vm\"");
    assert!(env.sim.remove_vm(&removed.uuid));
    assert!(env.sim.migrate_vm(&migrated.uuid, 1));
    let added = env.sim.start_vm(1).expect("host 1 can run a VM");
    let added_name = env
        .sim
        .view()
        .vms
        .into_iter()
        .find(|v| v.uuid == added)
        .unwrap()
        .name;
    let new_host = &view.hosts[1].uuid;
    let names = |scrape: &Scrape, uuid: &str| -> BTreeSet<String> {
        series_of_vm(scrape, uuid)
            .iter()
            .map(|s| s.labels["vm"].clone())
            .collect()
    };
    let hosts_of = |scrape: &Scrape, uuid: &str| -> BTreeSet<String> {
        series_of_vm(scrape, uuid)
            .iter()
            .filter_map(|s| s.labels.get("host_uuid").cloned())
            .collect()
    };
    let want = (
        BTreeSet::from(["renamed \"vm\"".to_string()]),
        BTreeSet::new(),
        BTreeSet::from([added_name]),
        BTreeSet::from([new_host.clone()]),
    );
    // Four changes, in one or several event batches: wait until every one shows. Each part
    // compared is a whole set, so a stale series (old name, old host, removed VM) keeps the
    // wait going and, past the bound, fails the test.
    let scrape = env
        .scrape_until("the rename, removal, start and migration show", |s| {
            let seen = (
                names(s, &renamed.uuid),
                names(s, &removed.uuid),
                names(s, &added),
                hosts_of(s, &migrated.uuid),
            );
            match seen == want {
                true => Ok(()),
                false => Err(format!(
                    "(renamed, removed, added, hosts of migrated) = {seen:?}"
                )),
            }
        })
        .await;
    assert!(
        series_of_vm(&scrape, &removed.uuid).is_empty(),
        "removed VM"
    );
    assert!(
        series_of_vm(&scrape, &added)
            .iter()
            .any(|s| s.name == "xen_vm_cpu"),
        "the added VM's RRD is there"
    );
    // No RPC was needed to learn any of it: events brought it.
    let counters = env.sim.counters();
    let rpc: Vec<&str> = counters
        .rpc
        .keys()
        .map(String::as_str)
        .filter(|m| *m != "event.from")
        .collect();
    assert!(rpc.is_empty(), "{rpc:?}");
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn a_lost_event_stream_recovers_by_itself() {
    let env = start(2).await;
    let view = env.sim.view();
    let vm = view
        .vms
        .iter()
        .find(|v| v.power_state == "Running" && !v.is_control_domain)
        .unwrap()
        .clone();
    env.scrape().await;
    let expected_series = env.scrape().await.series.len();

    for (round, break_stream) in ["session", "connection", "events_lost"].iter().enumerate() {
        let calls = |method: &str| env.sim.counters().rpc.get(method).copied().unwrap_or(0);
        let (reads, polls) = (calls("VM.get_all_records"), calls("event.from"));
        match *break_stream {
            "session" => env.sim.invalidate_sessions(),
            "connection" => env.sim.drop_event_streams(),
            _ => env.sim.lose_events(),
        }
        if *break_stream == "connection" {
            // No wake-up here: the parked long poll would otherwise wait 30 s, so a new
            // event.from within the bound proves the cut was seen. It is either re-tried on a
            // new connection with the same token (the HTTP client does that for a request
            // that got no response byte) or ends in a full re-read; both keep the inventory
            // whole.
            wait_for_calls(&env, "event.from", polls, break_stream).await;
        } else {
            // Wake the parked long poll, so that the next call meets the fault now rather
            // than after its 30 s wait.
            env.sim.set_vm_name(&vm.uuid, &format!("wake {round}"));
            wait_for_calls(&env, "VM.get_all_records", reads, break_stream).await;
        }
        let name = format!("after {break_stream} {round}");
        env.sim.set_vm_name(&vm.uuid, &name);
        // The rename reaches the inventory through the recovered stream: every series of the
        // VM carries the new name and no other.
        let scrape = env
            .scrape_until(&format!("{break_stream}: the rename shows"), |s| {
                let names: BTreeSet<&str> = series_of_vm(s, &vm.uuid)
                    .iter()
                    .map(|s| s.labels["vm"].as_str())
                    .collect();
                match names == BTreeSet::from([name.as_str()]) {
                    true => Ok(()),
                    false => Err(format!("{names:?}")),
                }
            })
            .await;
        let up = scrape
            .all("xen_host_up")
            .iter()
            .filter(|s| s.value == 1.0)
            .count();
        assert_eq!(up, 2, "{break_stream}");
        // Complete: as many series as before, give or take NaN samples and the error
        // counter that records the break.
        let n = scrape.series.len();
        assert!(
            n + n / 20 >= expected_series,
            "{break_stream}: {n} series vs {expected_series}"
        );
        if *break_stream != "connection" {
            assert!(
                scrape
                    .all("xen_collector_errors_total")
                    .iter()
                    .any(|s| s.labels["source"] == "events" && s.value > 0.0),
                "{break_stream}: the break is counted"
            );
        }
    }
    env.stop().await.shutdown().await;
}

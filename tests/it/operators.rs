//! What operators check beyond load, against the simulator: VM disks, tags, XAPI's own
//! messages, certificates, boot and licence times, pending reboots, snapshots, HA capacity
//! and the guest agent, each equal to the records it comes from, and each kind of change
//! visible within a few scrapes through `event.from`.

use std::collections::{BTreeMap, BTreeSet};

use xapi_sim::{Generation, PoolView, SimConfig};

use crate::harness::{Scrape, TestEnv};

async fn start() -> TestEnv {
    start_generation(Generation::Current).await
}

async fn start_generation(generation: Generation) -> TestEnv {
    TestEnv::start(SimConfig {
        hosts: 3,
        vms_per_host: 4,
        halted_vms: 2,
        templates: 2,
        generation,
        ..SimConfig::default()
    })
    .await
}

/// The VMs the exporter exports: no templates or snapshots (control domains are VMs).
fn exported(view: &PoolView) -> impl Iterator<Item = &xapi_sim::VmView> {
    view.vms
        .iter()
        .filter(|vm| !vm.is_a_template && !vm.is_a_snapshot)
}

/// The guests: exported VMs that are not control domains.
fn guests(view: &PoolView) -> impl Iterator<Item = &xapi_sim::VmView> {
    exported(view).filter(|vm| !vm.is_control_domain)
}

/// `(labels of interest) → value` of every series of `name`.
fn table(scrape: &Scrape, name: &str, keys: &[&str]) -> BTreeMap<Vec<String>, f64> {
    scrape
        .all(name)
        .into_iter()
        .map(|s| {
            let key = keys
                .iter()
                .map(|k| s.labels.get(*k).cloned().unwrap_or_default())
                .collect();
            (key, s.value)
        })
        .collect()
}

fn expected_tags<'a>(
    objects: impl Iterator<Item = (&'a str, &'a [String])>,
) -> BTreeMap<Vec<String>, f64> {
    objects
        .flat_map(|(uuid, tags)| {
            tags.iter()
                .map(move |tag| (vec![uuid.to_string(), tag.clone()], 1.0))
        })
        .collect()
}

fn expected_disks(view: &PoolView, physical: bool) -> BTreeMap<Vec<String>, f64> {
    let vdis: BTreeMap<&str, &xapi_sim::VdiView> =
        view.vdis.iter().map(|v| (v.uuid.as_str(), v)).collect();
    let mut out = BTreeMap::new();
    for vm in guests(view) {
        for disk in &vm.disks {
            let Some(vdi) = disk.vdi_uuid.as_deref().and_then(|u| vdis.get(u)) else {
                continue;
            };
            if disk.vbd_type != "Disk" {
                continue;
            }
            let value = if physical {
                vdi.physical_utilisation
            } else {
                vdi.virtual_size
            };
            out.insert(
                vec![
                    vm.uuid.clone(),
                    disk.device.clone(),
                    disk.userdevice.clone(),
                    vdi.uuid.clone(),
                    vdi.sr_uuid.clone(),
                ],
                value as f64,
            );
        }
    }
    out
}

const DISK_KEYS: &[&str] = &["vm_uuid", "vbd", "userdevice", "vdi_uuid", "sr_uuid"];

/// A message name as the exporter counts it.
fn message_name(name: &str) -> String {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        name.to_string()
    } else {
        "other".to_string()
    }
}

fn expected_messages(view: &PoolView) -> (BTreeMap<Vec<String>, f64>, BTreeMap<Vec<String>, f64>) {
    let mut count = BTreeMap::new();
    let mut newest: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for m in &view.messages {
        let key = vec![message_name(&m.name), m.priority.to_string(), m.cls.clone()];
        *count.entry(key.clone()).or_insert(0.0) += 1.0;
        let t = newest.entry(key).or_insert(f64::MIN);
        *t = t.max(m.timestamp as f64);
    }
    (count, newest)
}

fn host_reboot_required(host: &xapi_sim::HostView) -> bool {
    host.pending_guidances
        .iter()
        .any(|g| g.starts_with("reboot_host"))
        || !host.updates_requiring_reboot.is_empty()
        || host
            .rpm_patch_installation_ms
            .is_some_and(|ms| ms as f64 / 1000.0 > host.boot_time as f64)
}

fn vm_reboot_required(vm: &xapi_sim::VmView) -> bool {
    vm.pending_guidances
        .iter()
        .any(|g| g == "restart_vm" || g == "restart_device_model")
        || vm.requires_reboot
}

/// Notes in `problems` where `got` differs from `want`.
fn compare(
    problems: &mut Vec<String>,
    what: &str,
    got: BTreeMap<Vec<String>, f64>,
    want: BTreeMap<Vec<String>, f64>,
) {
    let keys: BTreeSet<&Vec<String>> = got.keys().chain(want.keys()).collect();
    for key in keys {
        let (g, w) = (got.get(key), want.get(key));
        if g != w {
            problems.push(format!("{what} {key:?}: got {g:?}, want {w:?}"));
        }
    }
}

/// Every family of this issue against the simulator's view, on the current generation.
fn check_all(scrape: &Scrape, env: &TestEnv) -> Result<(), String> {
    check_generation(scrape, env, Generation::Current)
}

/// Every family of this issue against the simulator's view. The view is the model; what
/// `generation` does not put on the wire (`pending_guidances` before 1.303) counts as empty.
fn check_generation(scrape: &Scrape, env: &TestEnv, generation: Generation) -> Result<(), String> {
    let mut view = env.sim.view();
    if generation == Generation::Legacy {
        view.hosts
            .iter_mut()
            .for_each(|h| h.pending_guidances.clear());
        view.vms
            .iter_mut()
            .for_each(|v| v.pending_guidances.clear());
    }
    let mut problems = Vec::new();

    // Tags.
    compare(
        &mut problems,
        "xen_vm_tag",
        table(scrape, "xen_vm_tag", &["vm_uuid", "tag"]),
        expected_tags(exported(&view).map(|v| (v.uuid.as_str(), v.tags.as_slice()))),
    );
    compare(
        &mut problems,
        "xen_host_tag",
        table(scrape, "xen_host_tag", &["host_uuid", "tag"]),
        expected_tags(
            view.hosts
                .iter()
                .map(|h| (h.uuid.as_str(), h.tags.as_slice())),
        ),
    );
    compare(
        &mut problems,
        "xen_sr_tag",
        table(scrape, "xen_sr_tag", &["sr_uuid", "tag"]),
        expected_tags(
            view.srs
                .iter()
                .map(|s| (s.uuid.as_str(), s.tags.as_slice())),
        ),
    );
    // Disks.
    compare(
        &mut problems,
        "xen_vm_disk_virtual_size_bytes",
        table(scrape, "xen_vm_disk_virtual_size_bytes", DISK_KEYS),
        expected_disks(&view, false),
    );
    compare(
        &mut problems,
        "xen_vm_disk_physical_utilization_bytes",
        table(scrape, "xen_vm_disk_physical_utilization_bytes", DISK_KEYS),
        expected_disks(&view, true),
    );
    // Messages.
    let (count, newest) = expected_messages(&view);
    compare(
        &mut problems,
        "xen_messages",
        table(scrape, "xen_messages", &["name", "priority", "class"]),
        count,
    );
    compare(
        &mut problems,
        "xen_messages_newest_time_seconds",
        table(
            scrape,
            "xen_messages_newest_time_seconds",
            &["name", "priority", "class"],
        ),
        newest,
    );
    // Host lifecycle.
    let per_host = |f: &dyn Fn(&xapi_sim::HostView) -> Option<f64>| {
        view.hosts
            .iter()
            .filter_map(|h| f(h).map(|v| (vec![h.uuid.clone()], v)))
            .collect::<BTreeMap<_, _>>()
    };
    compare(
        &mut problems,
        "xen_host_boot_time_seconds",
        table(scrape, "xen_host_boot_time_seconds", &["host_uuid"]),
        per_host(&|h| (h.boot_time > 0).then_some(h.boot_time as f64)),
    );
    compare(
        &mut problems,
        "xen_host_license_expiry_time_seconds",
        table(
            scrape,
            "xen_host_license_expiry_time_seconds",
            &["host_uuid"],
        ),
        per_host(&|h| h.license_expiry.map(|t| t as f64)),
    );
    compare(
        &mut problems,
        "xen_host_reboot_required",
        table(scrape, "xen_host_reboot_required", &["host_uuid"]),
        per_host(&|h| Some(f64::from(u8::from(host_reboot_required(h))))),
    );
    // VM lifecycle.
    let per_vm = |f: &dyn Fn(&xapi_sim::VmView) -> Option<f64>| {
        exported(&view)
            .filter_map(|v| f(v).map(|x| (vec![v.uuid.clone()], x)))
            .collect::<BTreeMap<_, _>>()
    };
    compare(
        &mut problems,
        "xen_vm_reboot_required",
        table(scrape, "xen_vm_reboot_required", &["vm_uuid"]),
        per_vm(&|v| Some(f64::from(u8::from(vm_reboot_required(v))))),
    );
    compare(
        &mut problems,
        "xen_vm_snapshots",
        table(scrape, "xen_vm_snapshots", &["vm_uuid"]),
        per_vm(&|v| Some(v.snapshots.len() as f64)),
    );
    let snapshot_time: BTreeMap<&str, i64> = view
        .vms
        .iter()
        .filter(|v| v.is_a_snapshot)
        .map(|v| (v.uuid.as_str(), v.snapshot_time))
        .collect();
    compare(
        &mut problems,
        "xen_vm_oldest_snapshot_time_seconds",
        table(scrape, "xen_vm_oldest_snapshot_time_seconds", &["vm_uuid"]),
        per_vm(&|v| {
            v.snapshots
                .iter()
                .filter_map(|s| snapshot_time.get(s.as_str()))
                .min()
                .map(|t| *t as f64)
        }),
    );
    // HA capacity.
    let ha = [
        (
            "xen_pool_ha_host_failures_to_tolerate",
            view.ha_host_failures_to_tolerate as f64,
        ),
        (
            "xen_pool_ha_plan_exists_for",
            view.ha_plan_exists_for as f64,
        ),
        (
            "xen_pool_ha_overcommitted",
            f64::from(u8::from(view.ha_overcommitted)),
        ),
    ];
    for (name, want) in ha {
        let got: Vec<f64> = scrape.all(name).iter().map(|s| s.value).collect();
        if got != [want] {
            problems.push(format!("{name}: got {got:?}, want [{want}]"));
        }
    }
    // Certificates: every record, and the served certificate of a host without a `host` one.
    let host_uuid = |h: Option<usize>| h.map(|h| view.hosts[h].uuid.clone()).unwrap_or_default();
    let mut certificates: BTreeMap<Vec<String>, f64> = view
        .certificates
        .iter()
        .map(|c| {
            let cert_type = if c.cert_type.is_empty() {
                "host"
            } else {
                &c.cert_type
            };
            (
                vec![host_uuid(c.host), cert_type.to_string(), c.name.clone()],
                c.not_after as f64,
            )
        })
        .collect();
    let served = env.sim.server_certificate_not_after().expect("TLS is on");
    for h in &view.hosts {
        let has_host_record = view.certificates.iter().any(|c| {
            c.host.is_some_and(|i| view.hosts[i].uuid == h.uuid)
                && matches!(c.cert_type.as_str(), "host" | "")
        });
        if !has_host_record {
            certificates.insert(
                vec![h.uuid.clone(), "host".to_string(), String::new()],
                served as f64,
            );
        }
    }
    compare(
        &mut problems,
        "xen_certificate_expiry_time_seconds",
        table(
            scrape,
            "xen_certificate_expiry_time_seconds",
            &["host_uuid", "type", "name"],
        ),
        certificates,
    );
    // The guest agent, for running VMs only.
    for vm in exported(&view) {
        let info = scrape
            .all("xen_vm_info")
            .into_iter()
            .find(|s| s.labels.get("vm_uuid") == Some(&vm.uuid))
            .map(|s| s.labels.clone());
        let Some(info) = info else {
            problems.push(format!("no xen_vm_info for {}", vm.uuid));
            continue;
        };
        let running = vm.power_state == "Running";
        let want_os = if running {
            vm.os_name
                .as_deref()
                .map(|n| n.split('|').next().unwrap_or("").to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let want_distro = if running {
            vm.os_distro.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let want_pv = match (&vm.pv_drivers_version, running) {
            (Some((major, minor, micro, build)), true) => {
                let mut v = format!("{major}.{minor}.{micro}");
                if !build.is_empty() {
                    v.push('-');
                    v.push_str(build);
                }
                v
            }
            _ => String::new(),
        };
        for (label, want) in [
            ("os", want_os),
            ("distro", want_distro),
            ("pv_drivers_version", want_pv),
        ] {
            let got = info.get(label).cloned().unwrap_or_default();
            if got != want {
                problems.push(format!(
                    "xen_vm_info {} {label}: got {got:?}, want {want:?}",
                    vm.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[tokio::test]
async fn every_family_equals_the_records_it_comes_from() {
    let env = start().await;
    let view = env.sim.view();
    // Running and halted VMs both have disks and tags; one guest gets snapshots.
    assert!(guests(&view).any(|v| v.power_state != "Running" && !v.disks.is_empty()));
    let guest = guests(&view).next().unwrap().uuid.clone();
    env.sim.snapshot_vm(&guest, "before-upgrade").unwrap();
    env.sim.snapshot_vm(&guest, "after-upgrade").unwrap();
    env.sim
        .create_message("HA_POOL_OVERCOMMITTED", 1, "Pool", &view.pool_uuid, "body");
    env.sim
        .create_message("custom alert, lower case", 3, "VM", &guest, "body");
    env.scrape_until("every family equals its records", |s| check_all(s, &env))
        .await;
    env.stop().await.shutdown().await;
}

/// Older XAPIs: certificate records without `type` and `name` (before 1.294), one host with
/// an installed certificate and the others' served ones, no `pending_guidances` (before
/// 1.303).
#[tokio::test]
async fn older_generations_give_the_same_families_from_fewer_fields() {
    for generation in [Generation::Legacy, Generation::Nested] {
        let env = start_generation(generation).await;
        env.scrape_until(
            &format!("every family equals its records ({generation:?})"),
            |s| check_generation(s, &env, generation),
        )
        .await;
        env.stop().await.shutdown().await;
    }
}

#[tokio::test]
async fn each_kind_of_change_shows_within_a_few_scrapes() {
    let env = start().await;
    env.scrape().await;
    let view = env.sim.view();
    let guest = guests(&view)
        .find(|v| v.power_state == "Running")
        .unwrap()
        .clone();
    let host = 0;

    // A message created, then destroyed.
    let message = env
        .sim
        .create_message("VM_CRASHED", 2, "VM", &guest.uuid, "crash");
    env.scrape_until("the new message", |s| check_all(s, &env))
        .await;
    assert!(env.sim.destroy_message(&message));
    env.scrape_until("the destroyed message", |s| check_all(s, &env))
        .await;

    // Retag a VM, a host and an SR (with characters that need escaping).
    assert!(env.sim.set_tags(
        &guest.uuid,
        &["prod", "team \"a\"", "back\\slash", "ünï\ncode"]
    ));
    assert!(env.sim.set_tags(&view.hosts[host].uuid, &["rack-7"]));
    assert!(env.sim.set_tags(&view.srs[0].uuid, &[]));
    env.scrape_until("the new tags", |s| check_all(s, &env))
        .await;

    // Resize a disk.
    let vdi = guest
        .disks
        .iter()
        .find_map(|d| (d.vbd_type == "Disk").then(|| d.vdi_uuid.clone()).flatten())
        .expect("the guest has a disk");
    assert!(env.sim.resize_vdi(&vdi, 64 << 30, 10 << 30));
    env.scrape_until("the resized disk", |s| {
        check_all(s, &env)?;
        let got = table(s, "xen_vm_disk_virtual_size_bytes", &["vdi_uuid"]);
        (got.get(&vec![vdi.clone()]) == Some(&((64u64 << 30) as f64)))
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    })
    .await;

    // Renew a certificate.
    let renewable = (0..view.hosts.len())
        .find(|h| view.hosts[*h].certificate_not_after.is_some())
        .expect("a host with a host certificate record");
    assert!(env.sim.renew_certificate(renewable, 2_100_000_000));
    env.scrape_until("the renewed certificate", |s| check_all(s, &env))
        .await;

    // A pending reboot, by guidance and by rpm time.
    assert!(
        env.sim
            .set_pending_guidances(&view.hosts[host].uuid, &["reboot_host"])
    );
    let shows_reboot = |s: &Scrape| -> Result<(), String> {
        check_all(s, &env)?;
        let got = s.value(
            "xen_host_reboot_required",
            &[("host_uuid", &view.hosts[host].uuid)],
        );
        (got == Some(1.0))
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    };
    env.scrape_until("a reboot by guidance", shows_reboot).await;
    assert!(env.sim.set_pending_guidances(&view.hosts[host].uuid, &[]));
    env.scrape_until("the guidance cleared", |s| check_all(s, &env))
        .await;
    let boot = env.sim.view().hosts[host].boot_time;
    assert!(
        env.sim
            .set_rpm_patch_installation_time(host, Some((boot + 3600) * 1000))
    );
    env.scrape_until("a reboot by rpm time", shows_reboot).await;

    // A VM's pending restart.
    assert!(env.sim.set_pending_guidances(&guest.uuid, &["restart_vm"]));
    env.scrape_until("a VM restart by guidance", |s| {
        check_all(s, &env)?;
        let got = s.value("xen_vm_reboot_required", &[("vm_uuid", &guest.uuid)]);
        (got == Some(1.0))
            .then_some(())
            .ok_or_else(|| format!("{got:?}"))
    })
    .await;
    env.stop().await.shutdown().await;
}

#[tokio::test]
async fn tags_are_escaped_and_every_series_is_distinct() {
    let env = start().await;
    let view = env.sim.view();
    let guest = guests(&view).next().unwrap().uuid.clone();
    let tags = ["a\"b", "c\\d", "e\nf", "日本", "dup", "dup"];
    assert!(env.sim.set_tags(&guest, &tags));
    let scrape = env
        .scrape_until("the tags", |s| {
            let got: BTreeSet<String> = s
                .all("xen_vm_tag")
                .into_iter()
                .filter(|t| t.labels.get("vm_uuid") == Some(&guest))
                .map(|t| t.labels["tag"].clone())
                .collect();
            let want: BTreeSet<String> = tags.iter().map(|t| t.to_string()).collect();
            (got == want)
                .then_some(())
                .ok_or_else(|| format!("{got:?}"))
        })
        .await;
    // The strict parser has refused duplicates and bad escapes already; the raw text
    // carries the escapes of the text format.
    let text = env.get("/metrics").await.text().await.unwrap();
    assert!(text.contains(r#"tag="a\"b""#), "quote escaped");
    assert!(text.contains(r#"tag="c\\d""#), "backslash escaped");
    assert!(text.contains(r#"tag="e\nf""#), "newline escaped");
    assert!(text.contains(r#"tag="日本""#), "non-ASCII as UTF-8");
    assert_eq!(
        scrape
            .all("xen_vm_tag")
            .iter()
            .filter(|t| t.labels.get("vm_uuid") == Some(&guest))
            .count(),
        5
    );
    env.stop().await.shutdown().await;
}

//! The families derived from XAPI records rather than RRDs: pool, host, VM and SR state and
//! inventory, lifecycle (boot, licence, pending reboots, snapshots, HA plan), PBD attachment,
//! multipath path counts, storage targets, VM disks, tags, XAPI messages and certificate
//! expiry. Pure: it reads an inventory snapshot, so a scrape makes no API call for any of it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::Collectors;
use crate::inventory::{Named, SrIndex, State, StorageTarget};
use crate::metrics::catalog;
use crate::metrics::{FamiliesBuilder, Label, Labels, Sample};

/// Adds every record-derived family `collectors` allows.
pub(super) fn push_families(
    out: &mut FamiliesBuilder,
    state: &State,
    srs: &SrIndex,
    collectors: Collectors,
) {
    push_pool(out, state);
    push_srs(out, srs);
    push_hosts(out, state, collectors);
    push_vms(out, state);
    if collectors.disks {
        push_disks(out, state);
    }
    push_storage(out, state, collectors);
    push_pifs(out, state);
    if collectors.messages {
        push_messages(out, state);
    }
    if collectors.certificates {
        push_certificates(out, state);
    }
    if collectors.tags {
        push_tags(out, state, srs);
    }
}

/// One sample of a catalog family whose labels are all its head.
pub(super) fn push(
    out: &mut FamiliesBuilder,
    family: &'static str,
    labels: Vec<Label>,
    value: f64,
) {
    out.push(
        Cow::Borrowed(family),
        catalog::describe,
        Sample {
            labels: Labels::head(Arc::from(labels)),
            value,
        },
    );
}

/// One sample of a catalog family labelled by `head` alone, shared with the object's other
/// such samples: one allocation per object rather than per sample.
fn push_shared(out: &mut FamiliesBuilder, family: &'static str, head: &Arc<[Label]>, value: f64) {
    out.push(
        Cow::Borrowed(family),
        catalog::describe,
        Sample {
            labels: Labels::head(head.clone()),
            value,
        },
    );
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

#[allow(clippy::cast_precision_loss)]
fn count(n: usize) -> f64 {
    n as f64
}

#[allow(clippy::cast_precision_loss)]
fn bytes(n: i64) -> f64 {
    n as f64
}

fn named(name_key: &'static str, uuid_key: &'static str, n: Option<&Named>) -> [Label; 2] {
    let empty = || Arc::<str>::from("");
    [
        Label::new(name_key, n.map_or_else(empty, |n| n.name.clone())),
        Label::new(uuid_key, n.map_or_else(empty, |n| n.uuid.clone())),
    ]
}

fn push_pool(out: &mut FamiliesBuilder, state: &State) {
    let Some(pool) = &state.pool else { return };
    let [name, uuid] = named("pool", "pool_uuid", Some(&pool.pool));
    let [master, master_uuid] = named("master", "master_uuid", pool.master.as_ref());
    let [sr, sr_uuid] = named("default_sr", "default_sr_uuid", pool.default_sr.as_ref());
    push(
        out,
        "xen_pool_info",
        vec![name.clone(), uuid.clone(), master, master_uuid, sr, sr_uuid],
        1.0,
    );
    push(
        out,
        "xen_pool_ha_enabled",
        vec![name.clone(), uuid.clone()],
        flag(pool.ha_enabled),
    );
    // Exported with HA off too: the configuration is there, and a rule can join ha_enabled.
    #[allow(clippy::cast_precision_loss)]
    for (family, value) in [
        (
            "xen_pool_ha_host_failures_to_tolerate",
            pool.ha_host_failures_to_tolerate as f64,
        ),
        (
            "xen_pool_ha_plan_exists_for",
            pool.ha_plan_exists_for as f64,
        ),
        ("xen_pool_ha_overcommitted", flag(pool.ha_overcommitted)),
    ] {
        push(out, family, vec![name.clone(), uuid.clone()], value);
    }
    push(
        out,
        "xen_pool_hosts",
        vec![name, uuid],
        count(state.hosts.len()),
    );
}

fn push_srs(out: &mut FamiliesBuilder, srs: &SrIndex) {
    for sr in &srs.srs {
        let head = || {
            vec![
                Label::new("sr", sr.name.clone()),
                Label::new("sr_uuid", sr.uuid.clone()),
            ]
        };
        let mut info = head();
        info.extend([
            Label::new("type", sr.sr_type.clone()),
            Label::new("content_type", sr.content_type.clone()),
            Label::new("shared", if sr.shared { "true" } else { "false" }),
        ]);
        push(out, "xen_sr_info", info, 1.0);
        push(out, "xen_sr_vdis", head(), count(sr.vdis));
    }
}

fn push_hosts(out: &mut FamiliesBuilder, state: &State, collectors: Collectors) {
    for h in &state.hosts {
        let head = || {
            vec![
                Label::new("host", h.host.name.clone()),
                Label::new("host_uuid", h.host.uuid.clone()),
            ]
        };
        let mut info = head();
        info.extend([
            Label::new("address", h.host.address.as_str()),
            Label::new("product_brand", h.product_brand.clone()),
            Label::new("product_version", h.product_version.clone()),
            Label::new("xen_version", h.xen_version.clone()),
            Label::new("cpu_model", h.cpu_model.clone()),
        ]);
        push(out, "xen_host_info", info, 1.0);
        push(out, "xen_host_enabled", head(), flag(h.enabled));
        if let Some(live) = h.live {
            push(out, "xen_host_live", head(), flag(live));
        }
        if let Some(memory) = h.memory_total {
            push(out, "xen_host_memory_total_bytes", head(), bytes(memory));
        }
        push(out, "xen_host_cpus", head(), count(h.cpu_count));
        push(out, "xen_host_running_vms", head(), count(h.running_vms));
        if let Some(boot) = h.boot_time {
            push(out, "xen_host_boot_time_seconds", head(), boot);
        }
        if let Some(expiry) = h.license_expiry {
            #[allow(clippy::cast_precision_loss)]
            push(
                out,
                "xen_host_license_expiry_time_seconds",
                head(),
                expiry as f64,
            );
        }
        push(
            out,
            "xen_host_reboot_required",
            head(),
            flag(h.reboot_required),
        );
        if collectors.multipath {
            push(
                out,
                "xen_host_multipath_enabled",
                head(),
                flag(h.multipathing),
            );
        }
    }
}

fn push_vms(out: &mut FamiliesBuilder, state: &State) {
    for v in &state.vms {
        let head: Arc<[Label]> = Arc::from(named("vm", "vm_uuid", Some(&v.vm)));
        let mut power = head.to_vec();
        power.push(Label::new("state", v.power_state.clone()));
        push(out, "xen_vm_power_state", power, 1.0);
        let mut info = head.to_vec();
        info.extend(named("host", "host_uuid", v.resident_on.as_ref()));
        info.extend([
            Label::new("os", v.os_name.clone()),
            Label::new("domain_type", v.domain_type.clone()),
            Label::new(
                "is_control_domain",
                if v.is_control_domain { "true" } else { "false" },
            ),
            Label::new("distro", v.distro.clone()),
            Label::new("pv_drivers_version", v.pv_drivers_version.clone()),
        ]);
        push(out, "xen_vm_info", info, 1.0);
        #[allow(clippy::cast_precision_loss)]
        push_shared(out, "xen_vm_vcpus", &head, v.vcpus as f64);
        for (family, value) in [
            ("xen_vm_memory_static_max_bytes", v.memory_static_max),
            ("xen_vm_memory_static_min_bytes", v.memory_static_min),
            ("xen_vm_memory_dynamic_max_bytes", v.memory_dynamic_max),
            ("xen_vm_memory_dynamic_min_bytes", v.memory_dynamic_min),
        ] {
            push_shared(out, family, &head, bytes(value));
        }
        if let Some(start) = v.start_time {
            #[allow(clippy::cast_precision_loss)]
            push_shared(out, "xen_vm_start_time_seconds", &head, start as f64);
        }
        push_shared(
            out,
            "xen_vm_reboot_required",
            &head,
            flag(v.reboot_required),
        );
        push_shared(out, "xen_vm_snapshots", &head, count(v.snapshots));
        if let Some(oldest) = v.oldest_snapshot {
            #[allow(clippy::cast_precision_loss)]
            push_shared(
                out,
                "xen_vm_oldest_snapshot_time_seconds",
                &head,
                oldest as f64,
            );
        }
    }
}

fn push_disks(out: &mut FamiliesBuilder, state: &State) {
    for v in &state.vms {
        for d in &v.disks {
            let mut labels: Vec<Label> = named("vm", "vm_uuid", Some(&v.vm)).into();
            labels.extend([
                Label::new("vbd", d.device.clone()),
                Label::new("userdevice", d.userdevice.clone()),
            ]);
            labels.extend(named("vdi", "vdi_uuid", Some(&d.vdi)));
            labels.extend(named("sr", "sr_uuid", d.sr.as_ref()));
            let labels: Arc<[Label]> = Arc::from(labels);
            for (family, value) in [
                ("xen_vm_disk_virtual_size_bytes", d.virtual_size),
                (
                    "xen_vm_disk_physical_utilization_bytes",
                    d.physical_utilisation,
                ),
            ] {
                out.push(
                    Cow::Borrowed(family),
                    catalog::describe,
                    Sample {
                        labels: Labels::head(labels.clone()),
                        value: bytes(value),
                    },
                );
            }
        }
    }
}

fn push_storage(out: &mut FamiliesBuilder, state: &State, collectors: Collectors) {
    let sr_head = |n: &Named| -> Vec<Label> { named("sr", "sr_uuid", Some(n)).into() };
    // SR-level families come from several PBDs (one per host): one series per distinct set.
    let mut targets: Vec<(&'static str, Vec<Label>)> = Vec::new();
    let mut multipath_active: BTreeSet<(Arc<str>, Arc<str>, bool)> = BTreeSet::new();
    for p in &state.pbds {
        let mut host = sr_head(&p.sr);
        host.extend(named("host", "host_uuid", Some(&p.host)));
        if collectors.pbd {
            let mut labels = host.clone();
            labels.push(Label::new("type", p.sr_type.clone()));
            push(out, "xen_pbd_attached", labels, flag(p.attached));
        }
        if collectors.multipath {
            let key = (p.sr.name.clone(), p.sr.uuid.clone(), p.multipathed);
            multipath_active.insert(key);
            for path in &p.paths {
                let mut labels = host.clone();
                labels.push(Label::new("scsi_id", path.scsi_id.clone()));
                push(
                    out,
                    "xen_sr_multipath_paths",
                    labels.clone(),
                    f64::from(path.active),
                );
                push(
                    out,
                    "xen_sr_multipath_paths_max",
                    labels,
                    f64::from(path.max),
                );
            }
        }
        if collectors.storage_targets {
            let mut labels = sr_head(&p.sr);
            let family = match &p.target {
                StorageTarget::Iscsi { target, iqn, port } => {
                    labels.extend([
                        Label::new("target", target.clone()),
                        Label::new("iqn", iqn.clone()),
                        Label::new("port", port.clone()),
                    ]);
                    "xen_sr_iscsi_target_info"
                }
                StorageTarget::Nfs { server, path } => {
                    labels.extend([
                        Label::new("server", server.clone()),
                        Label::new("path", path.clone()),
                    ]);
                    "xen_sr_nfs_target_info"
                }
                StorageTarget::Fc { scsi_id } => {
                    labels.push(Label::new("scsi_id", scsi_id.clone()));
                    "xen_sr_fc_info"
                }
                StorageTarget::Other => continue,
            };
            // PBDs are few (SRs × hosts), so a linear check is cheaper than hashing labels.
            if !targets.iter().any(|(f, l)| *f == family && *l == labels) {
                targets.push((family, labels));
            }
        }
    }
    for (family, labels) in targets {
        push(out, family, labels, 1.0);
    }
    // Active when any of the SR's PBDs runs multipathed.
    let mut last: Option<(Arc<str>, Arc<str>)> = None;
    for (name, uuid, on) in multipath_active.into_iter().rev() {
        if last.as_ref() == Some(&(name.clone(), uuid.clone())) {
            continue;
        }
        last = Some((name.clone(), uuid.clone()));
        let labels = vec![Label::new("sr", name), Label::new("sr_uuid", uuid)];
        push(out, "xen_sr_multipath_active", labels, flag(on));
    }
}

/// One series per tag of each VM, host and SR; the inventory has sorted and deduplicated
/// them, and objects without tags have none.
fn push_tags(out: &mut FamiliesBuilder, state: &State, srs: &SrIndex) {
    let objects = state
        .vms
        .iter()
        .map(|v| ("xen_vm_tag", named("vm", "vm_uuid", Some(&v.vm)), &v.tags))
        .chain(state.hosts.iter().map(|h| {
            let labels = [
                Label::new("host", h.host.name.clone()),
                Label::new("host_uuid", h.host.uuid.clone()),
            ];
            ("xen_host_tag", labels, &h.tags)
        }))
        .chain(srs.srs.iter().map(|sr| {
            let labels = [
                Label::new("sr", sr.name.clone()),
                Label::new("sr_uuid", sr.uuid.clone()),
            ];
            ("xen_sr_tag", labels, &sr.tags)
        }));
    for (family, [name, uuid], tags) in objects {
        for tag in tags.iter() {
            let labels = vec![name.clone(), uuid.clone(), Label::new("tag", tag.clone())];
            push(out, family, labels, 1.0);
        }
    }
}

fn push_certificates(out: &mut FamiliesBuilder, state: &State) {
    for c in &state.certificates {
        let mut labels: Vec<Label> = named("host", "host_uuid", c.host.as_ref()).into();
        labels.extend([
            Label::new("type", c.cert_type.clone()),
            Label::new("name", c.name.clone()),
        ]);
        #[allow(clippy::cast_precision_loss)]
        push(
            out,
            "xen_certificate_expiry_time_seconds",
            labels,
            c.not_after as f64,
        );
    }
}

fn push_messages(out: &mut FamiliesBuilder, state: &State) {
    for m in &state.messages {
        let labels = || {
            vec![
                Label::new("name", m.name.clone()),
                Label::new("priority", m.priority.clone()),
                Label::new("class", m.class.clone()),
            ]
        };
        push(out, "xen_messages", labels(), count(m.count));
        if let Some(newest) = m.newest {
            #[allow(clippy::cast_precision_loss)]
            push(
                out,
                "xen_messages_newest_time_seconds",
                labels(),
                newest as f64,
            );
        }
    }
}

fn push_pifs(out: &mut FamiliesBuilder, state: &State) {
    for p in &state.pifs {
        let mut labels: Vec<Label> = named("host", "host_uuid", Some(&p.host)).into();
        labels.extend([
            Label::new("pif", p.device.clone()),
            Label::new(
                "vlan",
                p.vlan.map_or_else(String::new, |v| v.to_string()).as_str(),
            ),
        ]);
        push(out, "xen_host_pif_attached", labels, flag(p.attached));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::inventory::Inventory;
    use crate::inventory::store::Store;
    use crate::xapi::records::Event;

    /// A store fed the way the event stream feeds it: `(class, reference, record JSON)`.
    fn store(records: &[(&str, &str, &str)]) -> Store {
        let mut store = Store::default();
        for (class, reference, json) in records {
            let event = Event {
                class: (*class).into(),
                operation: "add".into(),
                reference: (*reference).into(),
                snapshot: Some(serde_json::value::RawValue::from_string((*json).into()).unwrap()),
            };
            store.apply(&event).unwrap();
        }
        store
    }

    /// Every series as `family{name="value",…}` → value.
    fn series(store: &Store, collectors: Collectors) -> BTreeMap<String, f64> {
        let inventory = Inventory::from_store(store);
        let mut out = FamiliesBuilder::new();
        push_families(&mut out, &inventory.state, &inventory.srs, collectors);
        let mut all = BTreeMap::new();
        for family in out.finish().0 {
            for sample in family.samples {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|l| format!("{}={:?}", l.name, &*l.value))
                    .collect();
                all.insert(
                    format!("{}{{{}}}", family.name, labels.join(",")),
                    sample.value,
                );
            }
        }
        all
    }

    fn family<'a>(all: &'a BTreeMap<String, f64>, name: &str) -> Vec<(&'a str, f64)> {
        let prefix = format!("{name}{{");
        all.iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (&k[name.len()..], *v))
            .collect()
    }

    fn host(extra: &str) -> (&'static str, &'static str, String) {
        let json = format!(r#"{{"uuid":"hu1","name_label":"h1","address":"10.0.0.1"{extra}}}"#);
        ("host", "OpaqueRef:h1", json)
    }

    fn host_series(extra: &str) -> BTreeMap<String, f64> {
        let (class, reference, json) = host(extra);
        series(&store(&[(class, reference, &json)]), Collectors::default())
    }

    #[test]
    fn host_boot_time_is_ocaml_float_text() {
        let all = host_series(r#","other_config":{"boot_time":"1712345678."}"#);
        assert_eq!(
            family(&all, "xen_host_boot_time_seconds"),
            [(r#"{host="h1",host_uuid="hu1"}"#, 1_712_345_678.0)]
        );
        for unknown in [r#""0.""#, r#""soon""#, r#""""#, r#""nan""#, r#""-5.""#] {
            let all = host_series(&format!(r#","other_config":{{"boot_time":{unknown}}}"#));
            assert!(
                family(&all, "xen_host_boot_time_seconds").is_empty(),
                "{unknown}"
            );
        }
        assert!(family(&host_series(""), "xen_host_boot_time_seconds").is_empty());
    }

    #[test]
    fn licence_expiry_is_xapi_time_or_nothing() {
        let all =
            host_series(r#","license_params":{"expiry":"20300101T00:00:00Z","sku_type":"x"}"#);
        assert_eq!(
            family(&all, "xen_host_license_expiry_time_seconds")[0].1,
            1_893_456_000.0
        );
        for none in [
            r#","license_params":{"expiry":"never"}"#,
            r#","license_params":{"expiry":"2030"}"#,
            r#","license_params":{}"#,
            "",
        ] {
            let all = host_series(none);
            assert!(
                family(&all, "xen_host_license_expiry_time_seconds").is_empty(),
                "{none}"
            );
        }
    }

    #[test]
    fn host_reboot_required_by_each_rule() {
        let required = |extra: &str| family(&host_series(extra), "xen_host_reboot_required")[0].1;
        // An older XAPI: neither field; a yum-updated host: both empty.
        assert_eq!(required(""), 0.0);
        assert_eq!(
            required(r#","pending_guidances":[],"updates_requiring_reboot":[]"#),
            0.0
        );
        assert_eq!(
            required(r#","pending_guidances":["restart_toolstack"]"#),
            0.0
        );
        assert_eq!(required(r#","pending_guidances":["reboot_host"]"#), 1.0);
        assert_eq!(
            required(r#","pending_guidances":["reboot_host_on_livepatch_failure"]"#),
            1.0
        );
        assert_eq!(
            required(r#","updates_requiring_reboot":["OpaqueRef:u"]"#),
            1.0
        );
        let rpm = |boot: &str, patched: &str| {
            required(&format!(
                r#","other_config":{{"boot_time":"{boot}","rpm_patch_installation_time":"{patched}"}}"#
            ))
        };
        assert_eq!(rpm("1712345678.", "1712349999.123"), 1.0);
        assert_eq!(rpm("1712345678.", "1712300000.5"), 0.0);
        // Without a known boot time the rule cannot tell.
        assert_eq!(rpm("0.", "1712349999.123"), 0.0);
        assert_eq!(rpm("1712345678.", "garbage"), 0.0);
    }

    fn vm(reference: &'static str, extra: &str) -> (&'static str, &'static str, String) {
        let uuid = reference.trim_start_matches("OpaqueRef:");
        let json = format!(r#"{{"uuid":"{uuid}","name_label":"{uuid}"{extra}}}"#);
        ("vm", reference, json)
    }

    fn series_of(records: &[(&'static str, &'static str, String)]) -> BTreeMap<String, f64> {
        let records: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(c, r, j)| (*c, *r, j.as_str()))
            .collect();
        // Every record family, the disks too.
        let all = Collectors {
            disks: true,
            ..Collectors::default()
        };
        series(&store(&records), all)
    }

    #[test]
    fn vm_reboot_required_and_older_fields() {
        let all = series_of(&[
            vm("OpaqueRef:old", ""),
            vm(
                "OpaqueRef:tool",
                r#","pending_guidances":["restart_toolstack"]"#,
            ),
            vm(
                "OpaqueRef:dm",
                r#","pending_guidances":["restart_device_model"]"#,
            ),
            vm("OpaqueRef:vm", r#","pending_guidances":["restart_vm"]"#),
            vm("OpaqueRef:flag", r#","requires_reboot":true"#),
        ]);
        let values: Vec<f64> = family(&all, "xen_vm_reboot_required")
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        // Sorted by VM name: dm, flag, old, tool, vm.
        assert_eq!(values, [1.0, 1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn snapshots_count_and_oldest_time() {
        let snapshot = |reference: &'static str, of: &str, time: &str| {
            vm(
                reference,
                &format!(r#","is_a_snapshot":true,"snapshot_of":"{of}","snapshot_time":"{time}""#),
            )
        };
        let all = series_of(&[
            vm("OpaqueRef:a", r#","power_state":"Running""#),
            vm("OpaqueRef:b", r#","power_state":"Halted""#),
            snapshot("OpaqueRef:s1", "OpaqueRef:a", "20260101T00:00:00Z"),
            snapshot("OpaqueRef:s2", "OpaqueRef:a", "20250101T00:00:00Z"),
            // Unknown times count but have no age.
            snapshot("OpaqueRef:s3", "OpaqueRef:a", "19700101T00:00:00Z"),
            snapshot("OpaqueRef:s4", "OpaqueRef:a", "garbage"),
        ]);
        assert_eq!(
            family(&all, "xen_vm_snapshots"),
            [
                (r#"{vm="a",vm_uuid="a"}"#, 4.0),
                (r#"{vm="b",vm_uuid="b"}"#, 0.0)
            ]
        );
        assert_eq!(
            family(&all, "xen_vm_oldest_snapshot_time_seconds"),
            [(r#"{vm="a",vm_uuid="a"}"#, 1_735_689_600.0)]
        );
        // Snapshots are not VMs of their own.
        assert!(!all.keys().any(|k| k.contains("vm=\"s1\"")));
    }

    #[test]
    fn pool_ha_is_exported_with_ha_off() {
        let all = series(
            &store(&[(
                "pool",
                "OpaqueRef:p",
                r#"{"uuid":"pu","name_label":"lab","ha_enabled":false,"ha_host_failures_to_tolerate":"1","ha_plan_exists_for":0,"ha_overcommitted":true}"#,
            )]),
            Collectors::default(),
        );
        let one = |name| family(&all, name)[0];
        assert_eq!(
            one("xen_pool_ha_host_failures_to_tolerate"),
            (r#"{pool="lab",pool_uuid="pu"}"#, 1.0)
        );
        assert_eq!(one("xen_pool_ha_plan_exists_for").1, 0.0);
        assert_eq!(one("xen_pool_ha_overcommitted").1, 1.0);
        // An older pool record without the fields: zeros, still exported.
        let all = series(
            &store(&[("pool", "OpaqueRef:p", r#"{"uuid":"pu","name_label":"lab"}"#)]),
            Collectors::default(),
        );
        assert_eq!(family(&all, "xen_pool_ha_overcommitted")[0].1, 0.0);
    }

    #[test]
    fn guest_labels_only_while_running() {
        let guest = (
            "vm_guest_metrics",
            "OpaqueRef:g",
            r#"{"os_version":{"name":"Microsoft Windows Server 2022|C:\\Windows|\\Device\\Harddisk0\\Partition2","distro":"windows","uname":"x"},
               "PV_drivers_version":{"major":"9","minor":"3","micro":"1","build":"42"}}"#
                .to_string(),
        );
        let info = |power: &str, drivers: &str| {
            let guest = (
                guest.0,
                guest.1,
                guest.2.replace(r#""build":"42""#, drivers),
            );
            let all = series_of(&[
                vm(
                    "OpaqueRef:w",
                    &format!(r#","power_state":"{power}","guest_metrics":"OpaqueRef:g""#),
                ),
                guest,
            ]);
            family(&all, "xen_vm_info")[0].0.to_string()
        };
        assert_eq!(
            info("Running", r#""build":"42""#),
            r#"{vm="w",vm_uuid="w",host="",host_uuid="",os="Microsoft Windows Server 2022",domain_type="",is_control_domain="false",distro="windows",pv_drivers_version="9.3.1-42"}"#
        );
        assert!(info("Running", r#""build":"""#).contains(r#"pv_drivers_version="9.3.1"}"#));
        assert!(info("Running", r#""x":"1""#).ends_with(r#"pv_drivers_version="9.3.1"}"#));
        // A halted VM keeps stale guest metrics: not shown.
        assert!(info("Halted", r#""build":"42""#).contains(
            r#"os="",domain_type="",is_control_domain="false",distro="",pv_drivers_version=""}"#
        ));
    }

    #[test]
    fn tags_one_series_each_escaped_by_the_encoder() {
        let all = series_of(&[
            vm(
                "OpaqueRef:v",
                r#","tags":["prod","a\"quote","back\\slash","new\nline","ünï","prod"]"#,
            ),
            vm("OpaqueRef:untagged", r#","tags":[]"#),
            vm("OpaqueRef:old", ""),
            (
                "host",
                "OpaqueRef:h",
                r#"{"uuid":"hu","name_label":"h","tags":["rack-1",null]}"#.into(),
            ),
            (
                "sr",
                "OpaqueRef:s",
                r#"{"uuid":"su","name_label":"s","tags":["ssd","ssd"]}"#.into(),
            ),
        ]);
        assert_eq!(family(&all, "xen_vm_tag").len(), 5);
        assert!(
            !all.keys()
                .any(|k| k.contains("untagged") && k.contains("_tag"))
        );
        assert_eq!(
            family(&all, "xen_host_tag"),
            [(r#"{host="h",host_uuid="hu",tag="rack-1"}"#, 1.0)]
        );
        assert_eq!(
            family(&all, "xen_sr_tag"),
            [(r#"{sr="s",sr_uuid="su",tag="ssd"}"#, 1.0)]
        );

        let store = store(&[(
            "vm",
            "OpaqueRef:v",
            r#"{"uuid":"u","name_label":"v","tags":["a\"q","b\\s","n\nl","ünï"]}"#,
        )]);
        let inventory = Inventory::from_store(&store);
        let mut out = FamiliesBuilder::new();
        push_families(
            &mut out,
            &inventory.state,
            &inventory.srs,
            Collectors::default(),
        );
        let families = out.finish().0;
        let mut text = Vec::new();
        crate::metrics::encode::encode(&families, crate::metrics::encode::Format::Text, &mut text);
        let text = String::from_utf8(text).unwrap();
        for line in [
            r#"xen_vm_tag{vm="v",vm_uuid="u",tag="a\"q"} 1"#,
            r#"xen_vm_tag{vm="v",vm_uuid="u",tag="b\\s"} 1"#,
            r#"xen_vm_tag{vm="v",vm_uuid="u",tag="n\nl"} 1"#,
            r#"xen_vm_tag{vm="v",vm_uuid="u",tag="ünï"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }

        let off = Collectors {
            tags: false,
            ..Collectors::default()
        };
        let all = series(&store, off);
        assert!(family(&all, "xen_vm_tag").is_empty());
    }

    #[test]
    fn vm_disks_follow_vbd_vdi_sr() {
        let records = [
            vm("OpaqueRef:v", r#","power_state":"Halted""#),
            vm("OpaqueRef:dom0", r#","is_control_domain":true"#),
            vm("OpaqueRef:t", r#","is_a_template":true"#),
            (
                "sr",
                "OpaqueRef:s",
                r#"{"uuid":"su","name_label":"Local"}"#.into(),
            ),
            (
                "vdi",
                "OpaqueRef:d0",
                r#"{"uuid":"du0","name_label":"root","SR":"OpaqueRef:s","virtual_size":"10737418240","physical_utilisation":2147483648,"sm_config":{"x":"y"}}"#.into(),
            ),
            (
                "vdi",
                "OpaqueRef:d1",
                r#"{"uuid":"du1","name_label":"data","SR":"OpaqueRef:gone","virtual_size":1024,"physical_utilisation":512}"#.into(),
            ),
            (
                "vbd",
                "OpaqueRef:b0",
                r#"{"VM":"OpaqueRef:v","VDI":"OpaqueRef:d0","device":"xvda","userdevice":"0","type":"Disk"}"#.into(),
            ),
            // Never plugged: no device yet.
            (
                "vbd",
                "OpaqueRef:b1",
                r#"{"VM":"OpaqueRef:v","VDI":"OpaqueRef:d1","device":"","userdevice":"1","type":"Disk"}"#.into(),
            ),
            // An empty CD drive and a CD with an ISO are not disks.
            (
                "vbd",
                "OpaqueRef:b3",
                r#"{"VM":"OpaqueRef:v","VDI":"OpaqueRef:NULL","device":"xvdd","userdevice":"3","type":"CD"}"#.into(),
            ),
            (
                "vbd",
                "OpaqueRef:b4",
                r#"{"VM":"OpaqueRef:v","VDI":"OpaqueRef:d0","device":"xvde","userdevice":"4","type":"CD"}"#.into(),
            ),
            // A disk whose VDI is unknown, and the disks of dom0 and a template.
            (
                "vbd",
                "OpaqueRef:b5",
                r#"{"VM":"OpaqueRef:v","VDI":"OpaqueRef:nope","device":"xvdf","userdevice":"5","type":"Disk"}"#.into(),
            ),
            (
                "vbd",
                "OpaqueRef:b6",
                r#"{"VM":"OpaqueRef:dom0","VDI":"OpaqueRef:d0","device":"sda","userdevice":"0","type":"Disk"}"#.into(),
            ),
            (
                "vbd",
                "OpaqueRef:b7",
                r#"{"VM":"OpaqueRef:t","VDI":"OpaqueRef:d0","device":"","userdevice":"0","type":"Disk"}"#.into(),
            ),
        ];
        let all = series_of(&records);
        assert_eq!(
            family(&all, "xen_vm_disk_virtual_size_bytes"),
            [
                (
                    r#"{vm="v",vm_uuid="v",vbd="",userdevice="1",vdi="data",vdi_uuid="du1",sr="",sr_uuid=""}"#,
                    1024.0
                ),
                (
                    r#"{vm="v",vm_uuid="v",vbd="xvda",userdevice="0",vdi="root",vdi_uuid="du0",sr="Local",sr_uuid="su"}"#,
                    10_737_418_240.0
                ),
            ]
        );
        assert_eq!(
            family(&all, "xen_vm_disk_physical_utilization_bytes")
                .iter()
                .map(|(_, v)| *v)
                .collect::<Vec<_>>(),
            [512.0, 2_147_483_648.0]
        );
        let refs: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(c, r, j)| (*c, *r, j.as_str()))
            .collect();
        let off = Collectors {
            disks: false,
            ..Collectors::default()
        };
        assert!(
            family(
                &series(&store(&refs), off),
                "xen_vm_disk_virtual_size_bytes"
            )
            .is_empty()
        );
    }

    #[test]
    fn messages_by_kind_bounded_without_bodies() {
        let message = |reference: &'static str, name: &str, priority: &str, time: &str| {
            let json = format!(
                r#"{{"uuid":"{reference}","name":"{name}","priority":{priority},"cls":"Host","obj_uuid":"hu","timestamp":"{time}","body":"secret-ish body"}}"#
            );
            ("message", reference, json)
        };
        let records = [
            message("OpaqueRef:m1", "HA_HOST_FAILED", "3", "20261201T10:00:00Z"),
            message("OpaqueRef:m2", "HA_HOST_FAILED", "3", "20261203T10:00:00Z"),
            message("OpaqueRef:m3", "HA_HOST_FAILED", "\"3\"", "garbage"),
            message("OpaqueRef:m4", "ALARM", "2", "20261202T00:00:00Z"),
            message(
                "OpaqueRef:m5",
                "made up by \\\"me\\\"",
                "1",
                "20261202T00:00:00Z",
            ),
            message("OpaqueRef:m6", &"X".repeat(65), "1", "20261201T00:00:00Z"),
            message("OpaqueRef:m7", "LOUD", "99", "20261201T00:00:00Z"),
        ];
        let refs: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(c, r, j)| (*c, *r, j.as_str()))
            .collect();
        let mut store = store(&refs);
        assert!(!format!("{:?}", store.messages).contains("secret-ish"));
        let all = series(&store, Collectors::default());
        assert_eq!(
            family(&all, "xen_messages"),
            [
                (r#"{name="ALARM",priority="2",class="Host"}"#, 1.0),
                (r#"{name="HA_HOST_FAILED",priority="3",class="Host"}"#, 3.0),
                (r#"{name="LOUD",priority="other",class="Host"}"#, 1.0),
                (r#"{name="other",priority="1",class="Host"}"#, 2.0),
            ]
        );
        assert_eq!(
            family(&all, "xen_messages_newest_time_seconds")[1],
            (
                r#"{name="HA_HOST_FAILED",priority="3",class="Host"}"#,
                1_796_292_000.0
            )
        );
        // A dismissed message leaves by a del event; the last of a kind takes its series.
        store
            .apply(&Event {
                class: "message".into(),
                operation: "del".into(),
                reference: "OpaqueRef:m4".into(),
                snapshot: None,
            })
            .unwrap();
        let all = series(&store, Collectors::default());
        assert!(!all.keys().any(|k| k.contains("ALARM")));
        let off = Collectors {
            messages: false,
            ..Collectors::default()
        };
        assert!(family(&series(&store, off), "xen_messages").is_empty());
    }

    #[test]
    fn certificate_expiry_per_record_and_served() {
        let cert = |reference: &'static str, extra: &str| {
            let json = format!(r#"{{"uuid":"{reference}","fingerprint":"AB"{extra}}}"#);
            ("certificate", reference, json)
        };
        let records = [
            host(""),
            (
                "host",
                "OpaqueRef:h2",
                r#"{"uuid":"hu2","name_label":"h2"}"#.to_string(),
            ),
            (
                "host",
                "OpaqueRef:h3",
                r#"{"uuid":"hu3","name_label":"h3"}"#.to_string(),
            ),
            // xapi 1.294+: typed and named.
            cert(
                "OpaqueRef:c1",
                r#","host":"OpaqueRef:h1","type":"host","name":"","not_after":"20270101T00:00:00Z""#,
            ),
            cert(
                "OpaqueRef:c2",
                r#","host":"OpaqueRef:h1","type":"host_internal","name":"","not_after":"20360101T00:00:00Z""#,
            ),
            cert(
                "OpaqueRef:c3",
                r#","host":"OpaqueRef:NULL","type":"ca","name":"corp \"root\"","not_after":"20300101T00:00:00Z""#,
            ),
            // Before 1.294: neither type nor name.
            cert(
                "OpaqueRef:c4",
                r#","host":"OpaqueRef:h2","not_after":"20280101T00:00:00Z""#,
            ),
            // Unreadable: no series.
            cert(
                "OpaqueRef:c5",
                r#","host":"OpaqueRef:h3","type":"pinned","name":"x","not_after":"soon""#,
            ),
        ];
        let refs: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|(c, r, j)| (*c, *r, j.as_str()))
            .collect();
        let mut store = store(&refs);
        // h3 has no host record: what it serves counts; h1 has one, so its served one does not
        // (the full read does not even ask for it).
        store
            .served_expiry
            .insert("OpaqueRef:h3".into(), 1_900_000_000);
        let all = series(&store, Collectors::default());
        assert_eq!(
            family(&all, "xen_certificate_expiry_time_seconds"),
            [
                (
                    r#"{host="",host_uuid="",type="ca",name="corp \"root\""}"#,
                    1_893_456_000.0
                ),
                (
                    r#"{host="h1",host_uuid="hu1",type="host",name=""}"#,
                    1_798_761_600.0
                ),
                (
                    r#"{host="h1",host_uuid="hu1",type="host_internal",name=""}"#,
                    2_082_758_400.0
                ),
                (
                    r#"{host="h2",host_uuid="hu2",type="host",name=""}"#,
                    1_830_297_600.0
                ),
                (
                    r#"{host="h3",host_uuid="hu3",type="host",name=""}"#,
                    1_900_000_000.0
                ),
            ]
        );
        let off = Collectors {
            certificates: false,
            ..Collectors::default()
        };
        assert!(family(&series(&store, off), "xen_certificate_expiry_time_seconds").is_empty());
    }
}

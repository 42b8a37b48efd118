//! The families derived from XAPI records rather than RRDs: pool, host, VM and SR state and
//! inventory, PBD attachment, multipath path counts and storage targets. Pure: it reads an
//! inventory snapshot, so a scrape makes no API call for any of it.

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
    push_storage(out, state, collectors);
    push_pifs(out, state);
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
        let head = || {
            vec![
                Label::new("vm", v.vm.name.clone()),
                Label::new("vm_uuid", v.vm.uuid.clone()),
            ]
        };
        let mut power = head();
        power.push(Label::new("state", v.power_state.clone()));
        push(out, "xen_vm_power_state", power, 1.0);
        let mut info = head();
        info.extend(named("host", "host_uuid", v.resident_on.as_ref()));
        info.extend([
            Label::new("os", v.os_name.clone()),
            Label::new("domain_type", v.domain_type.clone()),
            Label::new(
                "is_control_domain",
                if v.is_control_domain { "true" } else { "false" },
            ),
        ]);
        push(out, "xen_vm_info", info, 1.0);
        #[allow(clippy::cast_precision_loss)]
        push(out, "xen_vm_vcpus", head(), v.vcpus as f64);
        for (family, value) in [
            ("xen_vm_memory_static_max_bytes", v.memory_static_max),
            ("xen_vm_memory_static_min_bytes", v.memory_static_min),
            ("xen_vm_memory_dynamic_max_bytes", v.memory_dynamic_max),
            ("xen_vm_memory_dynamic_min_bytes", v.memory_dynamic_min),
        ] {
            push(out, family, head(), bytes(value));
        }
        if let Some(start) = v.start_time {
            #[allow(clippy::cast_precision_loss)]
            push(out, "xen_vm_start_time_seconds", head(), start as f64);
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

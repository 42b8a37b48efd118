//! Runtime changes to the simulated pool beyond its construction: power states, migration,
//! VM removal, PBD and multipath state, host flags, messages, tags, disks, certificates,
//! guidances, snapshots. Each returns whether it applied and
//! bumps the model's generation (and its RRD epoch when RRD layouts may change).

use super::model::{
    CertKind, Certificate, DELETED_MESSAGES_KEPT, DELETED_MESSAGES_MAX, Id, Model, Power, VmKind,
    colon_hex,
};
use super::rng::uuid;

impl Model {
    fn changed(&mut self, rrd: bool) {
        self.generation += 1;
        if rrd {
            self.rrd_epoch += 1;
        }
    }

    /// Makes host `h` the pool master; false for a bad index.
    pub(super) fn set_master(&mut self, h: usize) -> bool {
        if h >= self.hosts.len() {
            return false;
        }
        self.pool.master = h;
        // Only the master reports pool-wide data sources: RRD layouts change.
        self.changed(true);
        true
    }

    /// The next domain id on host `h`: xenopsd never reuses one while the host is up.
    fn next_domid(&self, h: usize) -> i64 {
        self.vms
            .iter()
            .filter(|v| v.resident_on == Some(h))
            .map(|v| v.domid)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Destroys a VM with its VIFs, VBDs and metrics objects (VDIs stay, as with
    /// `VM.destroy`). Control domains cannot be destroyed.
    pub(super) fn remove_vm(&mut self, uuid: &str) -> bool {
        let Some(i) = self.vm_index(uuid) else {
            return false;
        };
        if self.vms[i].is_control_domain() {
            return false;
        }
        let rrd = self.vms[i].has_domain();
        self.vms.remove(i);
        self.changed(rrd);
        true
    }

    /// Live-migrates a VM that has a domain to host `h`.
    pub(super) fn migrate_vm(&mut self, uuid: &str, h: usize) -> bool {
        let Some(i) = self.vm_index(uuid) else {
            return false;
        };
        let vm = &self.vms[i];
        if h >= self.hosts.len() || vm.is_control_domain() || !vm.has_domain() {
            return false;
        }
        if vm.resident_on == Some(h) {
            return true;
        }
        let domid = self.next_domid(h);
        let vm = &mut self.vms[i];
        vm.last_host = vm.resident_on;
        vm.resident_on = Some(h);
        vm.domid = domid;
        self.changed(true);
        true
    }

    /// Moves a guest to `power`. Halted and Suspended drop the domain (and, as xapi's
    /// `force_state_reset` does, the guest metrics); Running and Paused need one, created
    /// on the VM's affinity host, else where it last ran, else the master.
    pub(super) fn set_power_state(&mut self, uuid: &str, power: Power, now: i64) -> bool {
        let Some(i) = self.vm_index(uuid) else {
            return false;
        };
        if self.vms[i].kind != VmKind::Guest {
            return false;
        }
        let vm = &self.vms[i];
        if vm.power == power {
            return true;
        }
        match power {
            Power::Running | Power::Paused => {
                if !vm.has_domain() {
                    let h = vm
                        .affinity
                        .or(vm.last_host)
                        .filter(|&h| h < self.hosts.len())
                        .unwrap_or(self.pool.master);
                    let domid = self.next_domid(h);
                    let gm = vm.has_agent.then(|| self.serial());
                    let seed = self.seed;
                    let vm = &mut self.vms[i];
                    vm.resident_on = Some(h);
                    vm.last_host = Some(h);
                    vm.domid = domid;
                    vm.start_time = now;
                    vm.guest_updated = now;
                    vm.guest_metrics = gm.map(|n| Id::new(seed, "VM_guest_metrics", n));
                }
            }
            Power::Halted | Power::Suspended => {
                let vm = &mut self.vms[i];
                if vm.resident_on.is_some() {
                    vm.last_host = vm.resident_on;
                }
                vm.resident_on = None;
                vm.domid = -1;
                vm.guest_metrics = None;
            }
        }
        self.vms[i].power = power;
        self.changed(true);
        true
    }

    fn pbd_index(&self, sr_uuid: &str, h: usize) -> Option<usize> {
        let sr = self.srs.iter().position(|s| s.id.uuid == sr_uuid)?;
        self.pbds.iter().position(|p| p.sr == sr && p.host == h)
    }

    /// Sets `PBD.currently_attached` of host `h`'s PBD of that SR. The multipath keys stay
    /// as they are (SM would remove them on detach; tests set them explicitly).
    pub(super) fn set_pbd_attached(&mut self, sr_uuid: &str, h: usize, attached: bool) -> bool {
        let Some(p) = self.pbd_index(sr_uuid, h) else {
            return false;
        };
        if self.pbds[p].attached != attached {
            self.pbds[p].attached = attached;
            // Attached SRs decide the host's per-SR I/O data sources.
            self.changed(true);
        }
        true
    }

    /// Writes `other_config["mpath-<SCSIid>"] = "[active, max]"` (and `multipathed`) on
    /// host `h`'s PBD of that SR, as SM's mpathcount does; false if the PBD has no SCSIid.
    pub(super) fn set_multipath_paths(
        &mut self,
        sr_uuid: &str,
        h: usize,
        active: u32,
        max: u32,
    ) -> bool {
        let Some(p) = self.pbd_index(sr_uuid, h) else {
            return false;
        };
        let pbd = &mut self.pbds[p];
        let Some(scsi_id) = pbd
            .device_config
            .iter()
            .find(|(k, _)| k == "SCSIid")
            .map(|(_, v)| v.clone())
        else {
            return false;
        };
        set_key(
            &mut pbd.other_config,
            &format!("mpath-{scsi_id}"),
            &format!("[{active}, {max}]"),
        );
        set_key(&mut pbd.other_config, "multipathed", "true");
        self.changed(false);
        true
    }

    pub(super) fn set_host_enabled(&mut self, h: usize, enabled: bool) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.enabled = enabled;
        self.changed(false);
        true
    }

    pub(super) fn set_host_live(&mut self, h: usize, live: bool, now: i64) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        if host.live != live {
            host.live = live;
            host.metrics_updated = now;
        }
        self.changed(false);
        true
    }

    pub(super) fn set_host_name(&mut self, h: usize, name: &str) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.name = name.to_string();
        self.changed(false);
        true
    }

    /// Adds a data source, as a newly installed plugin would, to host `h`'s RRD; false for a
    /// bad index or a name the host already has.
    pub(super) fn add_host_data_source(&mut self, h: usize, name: &str, units: &str) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        if host.plugin_sources.iter().any(|(n, _)| n == name) {
            return false;
        }
        host.plugin_sources
            .push((name.to_string(), units.to_string()));
        self.changed(true);
        true
    }

    pub(super) fn set_host_multipathing(&mut self, h: usize, on: bool) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.multipathing = on;
        self.changed(false);
        true
    }
}

/// Replaces a map entry in place, or appends it.
fn set_key(map: &mut Vec<(String, String)>, key: &str, value: &str) {
    match map.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value.to_string(),
        None => map.push((key.to_string(), value.to_string())),
    }
}

/// Changes for the records operators check beyond load: messages, tags, disks,
/// certificates, pending guidances, patch times, snapshots, HA.
impl Model {
    /// Creates a message (any name: xapi lets any pool operator make one); returns its
    /// UUID. Messages are outside the database: only the message generation moves.
    pub(super) fn create_message(
        &mut self,
        name: &str,
        priority: i64,
        cls: &str,
        obj_uuid: &str,
        body: &str,
        now: i64,
    ) -> String {
        let i = self.push_message(name, priority, cls, obj_uuid, now, body.to_string());
        self.messages[i].id.uuid.clone()
    }

    /// Destroys a message by UUID; the deletion joins the ring `event.from` reports from.
    pub(super) fn destroy_message(&mut self, uuid: &str) -> bool {
        let Some(i) = self.messages.iter().position(|m| m.id.uuid == uuid) else {
            return false;
        };
        let m = self.messages.remove(i);
        self.message_generation += 1;
        self.deleted_messages
            .push_back((self.message_generation, m.id.opaque_ref));
        if self.deleted_messages.len() > DELETED_MESSAGES_MAX {
            let excess = self.deleted_messages.len() - DELETED_MESSAGES_KEPT;
            self.deleted_messages.drain(..excess);
        }
        true
    }

    /// Replaces the tags of the VM, host or SR with that UUID.
    pub(super) fn set_tags(&mut self, uuid: &str, tags: &[&str]) -> bool {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_string()).collect();
        if let Some(vm) = self.vms.iter_mut().find(|v| v.id.uuid == uuid) {
            vm.tags = tags;
        } else if let Some(host) = self.hosts.iter_mut().find(|h| h.id.uuid == uuid) {
            host.tags = tags;
        } else if let Some(sr) = self.srs.iter_mut().find(|s| s.id.uuid == uuid) {
            sr.tags = tags;
        } else {
            return false;
        }
        self.changed(false);
        true
    }

    /// Sets a VDI's `virtual_size` and `physical_utilisation` (bytes).
    pub(super) fn resize_vdi(&mut self, uuid: &str, virtual_size: i64, physical: i64) -> bool {
        let Some(vdi) = self.vdis.iter_mut().find(|d| d.id.uuid == uuid) else {
            return false;
        };
        vdi.virtual_size = virtual_size;
        vdi.physical_utilisation = physical;
        self.changed(false);
        true
    }

    /// Installs a new server certificate on host `h` valid until `not_after`, as
    /// `host.install_server_certificate` does: the old `host` record goes, a new one (new
    /// ref, UUID and fingerprints) comes. False if the host has no such record.
    pub(super) fn renew_certificate(&mut self, h: usize, not_after: i64, now: i64) -> bool {
        let Some(i) = self
            .certificates
            .iter()
            .position(|c| c.host == Some(h) && c.kind == CertKind::Host)
        else {
            return false;
        };
        let n = self.serial();
        let seed = self.seed;
        let old = self.certificates.remove(i);
        self.certificates.insert(
            i,
            Certificate {
                id: Id::new(seed, "Certificate", n),
                not_before: now,
                not_after,
                sha256: colon_hex(&uuid(seed, "cert/renewed/sha256", n), 32),
                sha1: colon_hex(&uuid(seed, "cert/renewed/sha1", n), 20),
                ..old
            },
        );
        self.changed(false);
        true
    }

    /// Sets `pending_guidances` of the host or VM with that UUID.
    pub(super) fn set_pending_guidances(&mut self, uuid: &str, guidances: &[&str]) -> bool {
        let list: Vec<String> = guidances.iter().map(|g| (*g).to_string()).collect();
        if let Some(vm) = self.vms.iter_mut().find(|v| v.id.uuid == uuid) {
            vm.pending_guidances = list;
        } else if let Some(host) = self.hosts.iter_mut().find(|h| h.id.uuid == uuid) {
            host.pending_guidances = list;
        } else {
            return false;
        }
        self.changed(false);
        true
    }

    pub(super) fn set_vm_requires_reboot(&mut self, uuid: &str, on: bool) -> bool {
        let Some(i) = self.vm_index(uuid) else {
            return false;
        };
        self.vms[i].requires_reboot = on;
        self.changed(false);
        true
    }

    /// Sets or removes host `h`'s `other_config["rpm_patch_installation_time"]`.
    pub(super) fn set_rpm_patch_time(&mut self, h: usize, ms: Option<i64>) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.rpm_patch_installation_ms = ms;
        self.changed(false);
        true
    }

    /// Sets host `h`'s `other_config["boot_time"]` (and `agent_start_time` after it).
    pub(super) fn set_boot_time(&mut self, h: usize, epoch: i64) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.boot_time = epoch;
        self.changed(false);
        true
    }

    /// Sets host `h`'s `license_params["expiry"]`; `None` = `never`.
    pub(super) fn set_license_expiry(&mut self, h: usize, expiry: Option<i64>) -> bool {
        let Some(host) = self.hosts.get_mut(h) else {
            return false;
        };
        host.license_expiry = expiry;
        self.changed(false);
        true
    }

    /// Snapshots a guest (its disks get snapshot VDIs); returns the snapshot's UUID.
    pub(super) fn snapshot_vm(&mut self, uuid: &str, name: &str, now: i64) -> Option<String> {
        let i = self.vm_index(uuid)?;
        if self.vms[i].kind != VmKind::Guest {
            return None;
        }
        let s = self.add_snapshot(i, now);
        self.vms[s].name = name.to_string();
        self.vms[s].snapshot_time = now;
        self.changed(false);
        Some(self.vms[s].id.uuid.clone())
    }

    /// Deletes a snapshot with its VBDs, VIFs and snapshot VDIs, as deleting a snapshot
    /// from a client does. False if that UUID is not a snapshot.
    pub(super) fn remove_snapshot(&mut self, uuid: &str) -> bool {
        let Some(i) = self.vm_index(uuid) else {
            return false;
        };
        if !self.vms[i].is_snapshot() {
            return false;
        }
        let vm = self.vms.remove(i);
        let disks: Vec<&String> = vm.vbds.iter().filter_map(|b| b.vdi.as_ref()).collect();
        self.vdis
            .retain(|d| !(d.is_snapshot && disks.contains(&&d.id.opaque_ref)));
        self.changed(false);
        true
    }

    pub(super) fn set_pool_ha(
        &mut self,
        enabled: bool,
        failures_to_tolerate: i64,
        plan_exists_for: i64,
        overcommitted: bool,
    ) {
        let p = &mut self.pool;
        p.ha_enabled = enabled;
        p.ha_host_failures_to_tolerate = failures_to_tolerate;
        p.ha_plan_exists_for = plan_exists_for;
        p.ha_overcommitted = overcommitted;
        self.changed(false);
    }
}

//! Runtime changes to the simulated pool beyond its construction: power states, migration,
//! VM removal, PBD and multipath state, host flags. Each returns whether it applied and
//! bumps the model's generation (and its RRD epoch when RRD layouts may change).

use super::model::{Id, Model, Power, VmKind};

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

//! The pool's inventory: names, identities and state of hosts, VMs, SRs, PBDs and PIFs, and
//! with their collectors VM disks, XAPI messages and certificate expiries, held between scrapes so that a scrape resolves a UUID with a map lookup and reads state without
//! any API call. [`store`] holds the raw records, [`live`] keeps them current by following
//! `event.from`, and this file derives the immutable snapshot scrapes read.

pub mod live;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::xapi::records;

use store::Store;

/// A host as the scrape needs it.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// Host UUID.
    pub uuid: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// `host.address`: where its `/rrd_updates` is served.
    pub address: String,
}

/// A VM as the scrape needs it.
#[derive(Debug, Clone)]
pub struct VmEntry {
    /// VM UUID.
    pub uuid: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
}

/// An SR as the scrape needs it.
#[derive(Debug, Clone)]
pub struct SrEntry {
    /// SR UUID.
    pub uuid: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// Driver type (`type` label).
    pub sr_type: Arc<str>,
    /// Content type (`content_type` label).
    pub content_type: Arc<str>,
    /// Reachable from every host.
    pub shared: bool,
    /// Bytes.
    pub physical_size: i64,
    /// Bytes.
    pub physical_utilisation: i64,
    /// Bytes.
    pub virtual_allocation: i64,
    /// Number of VDIs.
    pub vdis: usize,
    /// User tags, sorted, without repeats.
    pub tags: Tags,
}

/// An object's user tags, sorted and without repeats.
pub type Tags = Arc<[Arc<str>]>;

/// Tags as a record lists them, sorted and deduplicated so that each is one series.
fn tags(raw: &[String]) -> Tags {
    let mut tags: Vec<&str> = raw.iter().map(String::as_str).collect();
    tags.sort_unstable();
    tags.dedup();
    tags.into_iter().map(Arc::from).collect()
}

/// SRs by UUID and by the 8-character prefix that host data sources carry.
#[derive(Debug, Clone, Default)]
pub struct SrIndex {
    /// Every SR, sorted by UUID.
    pub srs: Vec<SrEntry>,
    by_uuid: HashMap<Arc<str>, usize>,
    by_prefix: HashMap<String, Vec<usize>>,
}

impl SrIndex {
    /// Indexes SR records.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a records::Sr>) -> SrIndex {
        let mut srs: Vec<SrEntry> = records
            .into_iter()
            .filter(|r| !r.uuid.is_empty())
            .map(|r| SrEntry {
                uuid: Arc::from(r.uuid.as_str()),
                name: Arc::from(r.name_label.as_str()),
                sr_type: Arc::from(r.sr_type.as_str()),
                content_type: Arc::from(r.content_type.as_str()),
                shared: r.shared,
                physical_size: r.physical_size,
                physical_utilisation: r.physical_utilisation,
                virtual_allocation: r.virtual_allocation,
                vdis: r.vdis.len(),
                tags: tags(&r.tags),
            })
            .collect();
        srs.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        let mut by_uuid = HashMap::with_capacity(srs.len());
        let mut by_prefix: HashMap<String, Vec<usize>> = HashMap::with_capacity(srs.len());
        for (i, sr) in srs.iter().enumerate() {
            by_uuid.insert(sr.uuid.clone(), i);
            if let Some(prefix) = sr.uuid.get(..8) {
                by_prefix.entry(prefix.to_string()).or_default().push(i);
            }
        }
        SrIndex {
            srs,
            by_uuid,
            by_prefix,
        }
    }

    /// The SR with this full UUID.
    pub fn by_uuid(&self, uuid: &str) -> Option<&SrEntry> {
        self.by_uuid.get(uuid).map(|&i| &self.srs[i])
    }

    /// The one SR whose UUID starts with `prefix`; `None` when none or several do.
    pub fn by_prefix(&self, prefix: &str) -> Option<&SrEntry> {
        match self.by_prefix.get(prefix).map(Vec::as_slice) {
            Some([only]) => Some(&self.srs[*only]),
            _ => None,
        }
    }
}

/// A name and UUID pair, as labels carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// Display name.
    pub name: Arc<str>,
    /// UUID.
    pub uuid: Arc<str>,
}

impl Named {
    fn of(name: &str, uuid: &str) -> Named {
        Named {
            name: Arc::from(name),
            uuid: Arc::from(uuid),
        }
    }
}

/// One shared copy of each text that many objects repeat.
#[derive(Default)]
struct Interner(HashMap<String, Arc<str>>);

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(text.to_owned(), shared.clone());
        shared
    }
}

/// The pool object.
#[derive(Debug, Clone)]
pub struct PoolState {
    /// Pool name and UUID.
    pub pool: Named,
    /// The master host, if its record is known.
    pub master: Option<Named>,
    /// High availability on.
    pub ha_enabled: bool,
    /// Host failures HA is configured to survive.
    pub ha_host_failures_to_tolerate: i64,
    /// Host failures the current HA plan survives.
    pub ha_plan_exists_for: i64,
    /// HA can no longer survive the configured failures.
    pub ha_overcommitted: bool,
    /// The default SR, if one is set and known.
    pub default_sr: Option<Named>,
}

/// A host's state.
#[derive(Debug, Clone)]
pub struct HostState {
    /// Name, UUID, address.
    pub host: HostEntry,
    /// Not in maintenance mode.
    pub enabled: bool,
    /// From `host_metrics.live`; `None` when its metrics record is missing.
    pub live: Option<bool>,
    /// Bytes, from `host_metrics`.
    pub memory_total: Option<i64>,
    /// Physical CPUs (`host_CPUs`, else `cpu_info.cpu_count`).
    pub cpu_count: usize,
    /// `cpu_info.modelname`.
    pub cpu_model: Arc<str>,
    /// `software_version.product_brand` (XCP-ng, XenServer, ...).
    pub product_brand: Arc<str>,
    /// `software_version.product_version`.
    pub product_version: Arc<str>,
    /// `software_version.xen`.
    pub xen_version: Arc<str>,
    /// Storage multipathing on.
    pub multipathing: bool,
    /// Guests (control domains excluded) running on it.
    pub running_vms: usize,
    /// Unix seconds of the last boot (`other_config["boot_time"]`); `None` when unknown.
    pub boot_time: Option<f64>,
    /// Unix seconds the licence expires (`license_params["expiry"]`); `None` for `never`,
    /// absent or unreadable.
    pub license_expiry: Option<i64>,
    /// An update waits for a reboot (see [`host_reboot_required`]).
    pub reboot_required: bool,
    /// User tags.
    pub tags: Tags,
}

/// A VM's state (templates and snapshots are not VMs).
#[derive(Debug, Clone)]
pub struct VmState {
    /// Name and UUID.
    pub vm: Named,
    /// `running`, `halted`, `paused`, `suspended` (XAPI's power state, lower-cased).
    pub power_state: Arc<str>,
    /// The host it runs on; `None` when halted or suspended.
    pub resident_on: Option<Named>,
    /// A host's dom0 (or a driver domain).
    pub is_control_domain: bool,
    /// `hvm`, `pv`, `pvh`, `pv_in_pvh`; empty before XenServer 7.5.
    pub domain_type: Arc<str>,
    /// `os_version.name` from the guest agent up to its first `|` (Windows agents append
    /// paths); empty without an agent or when the VM is not running.
    pub os_name: Arc<str>,
    /// `os_version.distro`; empty without an agent or when the VM is not running.
    pub distro: Arc<str>,
    /// `major.minor.micro[-build]` of the PV drivers; empty when unknown or not running.
    pub pv_drivers_version: Arc<str>,
    /// A restart waits (see [`vm_reboot_required`]).
    pub reboot_required: bool,
    /// Snapshots taken of it.
    pub snapshots: usize,
    /// Unix seconds of its oldest snapshot with a known time.
    pub oldest_snapshot: Option<i64>,
    /// User tags.
    pub tags: Tags,
    /// Its disks (VBDs of type `Disk` with a known VDI), in no particular order; empty for
    /// control domains and when VBDs and VDIs are not followed.
    pub disks: Vec<DiskState>,
    /// vCPUs now (running) or at start-up (otherwise).
    pub vcpus: i64,
    /// Bytes.
    pub memory_static_max: i64,
    /// Bytes.
    pub memory_static_min: i64,
    /// Bytes.
    pub memory_dynamic_max: i64,
    /// Bytes.
    pub memory_dynamic_min: i64,
    /// Unix seconds the running domain started; `None` when not running or unknown.
    pub start_time: Option<i64>,
}

/// One disk of a VM: a VBD of type `Disk`, its VDI and that VDI's SR.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskState {
    /// `VBD.device` as recorded (`xvda`; empty for a disk never plugged).
    pub device: Arc<str>,
    /// `VBD.userdevice`, the stable slot.
    pub userdevice: Arc<str>,
    /// The VDI (name, UUID).
    pub vdi: Named,
    /// The VDI's SR; `None` when its record is unknown.
    pub sr: Option<Named>,
    /// Bytes the guest sees (`VDI.virtual_size`).
    pub virtual_size: i64,
    /// Bytes the image takes in its SR (`VDI.physical_utilisation`).
    pub physical_utilisation: i64,
}

/// What a PBD's `device_config` says about where the SR lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageTarget {
    /// iSCSI (`target` may list several portals, comma-separated).
    Iscsi {
        /// Portal address(es).
        target: Arc<str>,
        /// Target IQN.
        iqn: Arc<str>,
        /// TCP port (3260 when not given).
        port: Arc<str>,
    },
    /// NFS.
    Nfs {
        /// Server name or address.
        server: Arc<str>,
        /// Exported path.
        path: Arc<str>,
    },
    /// Fibre Channel / HBA LUN.
    Fc {
        /// SCSI ID of the LUN.
        scsi_id: Arc<str>,
    },
    /// Local or anything else.
    Other,
}

/// One LUN's multipath path counts on one PBD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCount {
    /// SCSI ID of the LUN.
    pub scsi_id: Arc<str>,
    /// Paths up now.
    pub active: u32,
    /// Most paths ever seen.
    pub max: u32,
}

/// A PBD: one host's connection to one SR.
#[derive(Debug, Clone)]
pub struct PbdState {
    /// The SR (name, UUID).
    pub sr: Named,
    /// The SR's driver type.
    pub sr_type: Arc<str>,
    /// The host (name, UUID).
    pub host: Named,
    /// Plugged.
    pub attached: bool,
    /// `other_config["multipathed"]`: multipath active on this PBD.
    pub multipathed: bool,
    /// `other_config["mpath-<SCSIid>"]` entries.
    pub paths: Vec<PathCount>,
    /// From `device_config`.
    pub target: StorageTarget,
}

/// A host network interface.
#[derive(Debug, Clone)]
pub struct PifState {
    /// The host (name, UUID).
    pub host: Named,
    /// `eth0`, `bond0`, ...
    pub device: Arc<str>,
    /// VLAN tag, `None` for untagged.
    pub vlan: Option<i64>,
    /// Plugged.
    pub attached: bool,
    /// Carries management traffic.
    pub management: bool,
}

/// One certificate's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateState {
    /// The host it belongs to; `None` for a pool-wide one (a CA) or an unknown host.
    pub host: Option<Named>,
    /// `host`, `host_internal`, `ca`, `pinned` (`host` for records before xapi 1.294 and for
    /// the certificate a host serves without a record).
    pub cert_type: Arc<str>,
    /// Its name; empty before xapi 1.294 and for a served certificate.
    pub name: Arc<str>,
    /// Unix seconds of `notAfter`.
    pub not_after: i64,
}

/// Every `Certificate` record with a readable expiry, and the served certificate of each
/// host without a `host` record.
fn certificates(
    store: &Store,
    named_host: impl Fn(&str) -> Option<Named>,
) -> Vec<CertificateState> {
    let mut out: Vec<CertificateState> = store
        .certificates
        .values()
        .filter_map(|c| {
            let cert_type = if c.cert_type.is_empty() {
                "host"
            } else {
                c.cert_type.as_str()
            };
            Some(CertificateState {
                host: named_host(&c.host),
                cert_type: Arc::from(cert_type),
                name: Arc::from(c.name.as_str()),
                not_after: parse_xapi_time(&c.not_after)?,
            })
        })
        .collect();
    out.extend(
        store
            .served_expiry
            .iter()
            .filter_map(|(reference, expiry)| {
                Some(CertificateState {
                    host: Some(named_host(reference)?),
                    cert_type: Arc::from("host"),
                    name: Arc::from(""),
                    not_after: *expiry,
                })
            }),
    );
    out
}

/// The XAPI messages of one kind: the series of `xen_messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageGroup {
    /// The message name, or `other` for a name outside `[A-Z0-9_]{1,64}` (any client can
    /// create a message with any name; the label must stay bounded).
    pub name: Arc<str>,
    /// `1` (most severe) to `9`, or `other`.
    pub priority: Arc<str>,
    /// The class of the object it is about (`VM`, `Host`, `SR`, `Pool`, ...), or `other`.
    pub class: Arc<str>,
    /// How many exist now.
    pub count: usize,
    /// Unix seconds of the newest with a readable timestamp.
    pub newest: Option<i64>,
}

/// Messages grouped by name, priority and class, sorted; every value bounded.
fn message_groups(messages: &records::Records<records::Message>) -> Vec<MessageGroup> {
    let bounded = |text: &str, max: usize, ok: fn(u8) -> bool| -> Arc<str> {
        if !text.is_empty() && text.len() <= max && text.bytes().all(ok) {
            Arc::from(text)
        } else {
            Arc::from("other")
        }
    };
    // (name, priority, class) → (count, newest).
    type Key = (Arc<str>, Arc<str>, Arc<str>);
    let mut groups: BTreeMap<Key, (usize, Option<i64>)> = BTreeMap::new();
    for m in messages.values() {
        let name = bounded(&m.name, 64, |b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
        });
        let priority: Arc<str> = match m.priority {
            p @ 0..=9 => Arc::from(p.to_string()),
            _ => Arc::from("other"),
        };
        let class = bounded(&m.cls, 32, |b| b.is_ascii_alphanumeric() || b == b'_');
        let entry = groups.entry((name, priority, class)).or_default();
        entry.0 += 1;
        if let Some(t) = parse_xapi_time(&m.timestamp) {
            entry.1 = Some(entry.1.map_or(t, |n| n.max(t)));
        }
    }
    groups
        .into_iter()
        .map(|((name, priority, class), (count, newest))| MessageGroup {
            name,
            priority,
            class,
            count,
            newest,
        })
        .collect()
}

/// What XAPI records say beyond names: the source of the state families.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The pool, if its record is known.
    pub pool: Option<PoolState>,
    /// Every host.
    pub hosts: Vec<HostState>,
    /// Every VM, templates and snapshots excluded.
    pub vms: Vec<VmState>,
    /// Every PBD whose SR and host are known.
    pub pbds: Vec<PbdState>,
    /// Every PIF whose host is known.
    pub pifs: Vec<PifState>,
    /// XAPI messages by kind; empty unless messages are followed.
    pub messages: Vec<MessageGroup>,
    /// Certificate expiries; empty unless certificates are followed.
    pub certificates: Vec<CertificateState>,
}

/// One consistent view of the pool.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Hosts sorted by name, then UUID.
    pub hosts: Vec<HostEntry>,
    hosts_by_uuid: HashMap<Arc<str>, usize>,
    vms_by_uuid: HashMap<Arc<str>, VmEntry>,
    /// UUID of the pool master.
    pub master_uuid: Option<Arc<str>>,
    /// SRs.
    pub srs: Arc<SrIndex>,
    /// Everything else the records say.
    pub state: State,
    /// Units of the hosts' data sources, when the full read asked for them.
    data_source_units: Arc<store::DataSourceUnits>,
}

impl Inventory {
    /// Builds an inventory from the main record classes only (no metrics records, PBDs or
    /// PIFs): what the original exporter read.
    pub fn new(
        pools: records::Records<records::Pool>,
        hosts: records::Records<records::Host>,
        vms: records::Records<records::Vm>,
        srs: records::Records<records::Sr>,
    ) -> Inventory {
        Inventory::from_store(&Store {
            pools,
            hosts,
            vms,
            srs,
            ..Store::default()
        })
    }

    /// The same snapshot with other SRs: what a scrape sees after an SR record changed.
    #[cfg(test)]
    pub fn with_srs(&self, srs: Arc<SrIndex>) -> Inventory {
        Inventory {
            srs,
            ..self.clone()
        }
    }

    /// The same snapshot with other data source units.
    #[cfg(test)]
    pub fn with_data_source_units<'a>(
        &self,
        units: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Inventory {
        Inventory {
            data_source_units: Arc::new(
                units
                    .into_iter()
                    .map(|(name, unit)| (Box::from(name), Box::from(unit)))
                    .collect(),
            ),
            ..self.clone()
        }
    }

    /// Derives the snapshot from every record table.
    pub fn from_store(store: &Store) -> Inventory {
        // Names are allocated once per object and shared by every entry that shows them, and
        // the texts that many objects repeat (power states, devices, distributions) once per
        // value: a large pool's snapshot is otherwise tens of thousands of small strings.
        let hosts_named: HashMap<&str, Named> = store
            .hosts
            .iter()
            .map(|(reference, h)| (reference.as_str(), Named::of(&h.name_label, &h.uuid)))
            .collect();
        let named_host = |reference: &str| hosts_named.get(reference).cloned();
        let srs_named: HashMap<&str, Named> = store
            .srs
            .iter()
            .map(|(reference, s)| (reference.as_str(), Named::of(&s.name_label, &s.uuid)))
            .collect();
        let named_sr = |reference: &str| srs_named.get(reference).cloned();
        let mut interned = Interner::default();
        let pool_record = store.pools.values().next();
        let master_uuid = pool_record
            .and_then(|p| store.hosts.get(&p.master))
            .map(|h| Arc::from(h.uuid.as_str()));
        let mut host_list: Vec<HostEntry> = store
            .hosts
            .values()
            .filter(|h| !h.uuid.is_empty())
            .map(|h| HostEntry {
                uuid: Arc::from(h.uuid.as_str()),
                name: Arc::from(h.name_label.as_str()),
                address: h.address.clone(),
            })
            .collect();
        host_list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uuid.cmp(&b.uuid)));
        let hosts_by_uuid = host_list
            .iter()
            .enumerate()
            .map(|(i, h)| (h.uuid.clone(), i))
            .collect();
        // Templates and snapshots have no RRD and no state worth exporting.
        let is_vm = |v: &records::Vm| !v.is_a_template && !v.is_a_snapshot && !v.uuid.is_empty();
        let srs = Arc::new(SrIndex::new(store.srs.values().map(|s| &**s)));

        let mut running: HashMap<&str, usize> = HashMap::new();
        for vm in store.vms.values().filter(|v| is_vm(v)) {
            if !vm.is_control_domain && vm.power_state.eq_ignore_ascii_case("running") {
                *running.entry(vm.resident_on.as_str()).or_default() += 1;
            }
        }
        let hosts = store
            .hosts
            .iter()
            .filter(|(_, h)| !h.uuid.is_empty())
            .map(|(reference, h)| {
                let metrics = store.host_metrics.get(&h.metrics);
                let text = |map: &HashMap<String, String>, key: &str| {
                    Arc::from(map.get(key).map_or("", String::as_str))
                };
                HostState {
                    host: HostEntry {
                        uuid: Arc::from(h.uuid.as_str()),
                        name: Arc::from(h.name_label.as_str()),
                        address: h.address.clone(),
                    },
                    enabled: h.enabled,
                    live: metrics.map(|m| m.live),
                    memory_total: metrics.map(|m| m.memory_total).filter(|m| *m > 0),
                    cpu_count: if h.host_cpus.is_empty() {
                        h.cpu_info
                            .get("cpu_count")
                            .and_then(|c| c.trim().parse().ok())
                            .unwrap_or(0)
                    } else {
                        h.host_cpus.len()
                    },
                    cpu_model: text(&h.cpu_info, "modelname"),
                    product_brand: text(&h.software_version, "product_brand"),
                    product_version: text(&h.software_version, "product_version"),
                    xen_version: text(&h.software_version, "xen"),
                    multipathing: h.multipathing.unwrap_or_else(|| {
                        h.other_config
                            .get("multipathing")
                            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                    }),
                    running_vms: running.get(reference.as_str()).copied().unwrap_or(0),
                    boot_time: boot_time(h),
                    license_expiry: h
                        .license_params
                        .get("expiry")
                        .and_then(|e| parse_xapi_time(e)),
                    reboot_required: host_reboot_required(h),
                    tags: tags(&h.tags),
                }
            })
            .collect();
        let mut disks: HashMap<&str, Vec<DiskState>> = HashMap::new();
        for vbd in store.vbds.values() {
            // CD and floppy drives are not disks; an empty drive has a null VDI.
            if !vbd.is_disk() {
                continue;
            }
            let Some(vdi) = store.vdis.get(&vbd.vdi) else {
                continue;
            };
            disks.entry(vbd.vm.as_str()).or_default().push(DiskState {
                device: interned.get(&vbd.device),
                userdevice: interned.get(&vbd.userdevice),
                vdi: Named::of(&vdi.name_label, &vdi.uuid),
                sr: named_sr(&vdi.sr),
                virtual_size: vdi.virtual_size,
                physical_utilisation: vdi.physical_utilisation,
            });
        }
        // Snapshots per VM reference: count and oldest known time.
        let mut snapshots: HashMap<&str, (usize, Option<i64>)> = HashMap::new();
        for s in store.vms.values().filter(|v| v.is_a_snapshot) {
            let entry = snapshots.entry(s.snapshot_of.as_str()).or_default();
            entry.0 += 1;
            // The epoch is XAPI's "never"; such a snapshot counts but has no age.
            if let Some(t) = parse_xapi_time(&s.snapshot_time).filter(|t| *t > 0) {
                entry.1 = Some(entry.1.map_or(t, |o| o.min(t)));
            }
        }
        let vms = store
            .vms
            .iter()
            .filter(|(_, v)| is_vm(v))
            .map(|(reference, v)| {
                let power_state = v.power_state.to_ascii_lowercase();
                let resident_on = named_host(&v.resident_on);
                let metrics = store.vm_metrics.get(&v.metrics);
                let live = matches!(power_state.as_str(), "running" | "paused");
                // A halted VM keeps its last guest metrics (ocaml/xapi/xapi_vm.ml): stale.
                let guest = store
                    .vm_guest_metrics
                    .get(&v.guest_metrics)
                    .map(|g| &**g)
                    .filter(|_| live);
                let guest_text =
                    |text: fn(&records::VmGuestMetrics) -> &str| guest.map_or("", text);
                let (snapshot_count, oldest_snapshot) = snapshots
                    .get(reference.as_str())
                    .copied()
                    .unwrap_or_default();
                VmState {
                    vm: Named::of(&v.name_label, &v.uuid),
                    resident_on,
                    is_control_domain: v.is_control_domain,
                    domain_type: interned.get(&v.domain_type),
                    os_name: interned.get(guest_text(|g| &g.os_version.name)),
                    distro: interned.get(guest_text(|g| &g.os_version.distro)),
                    pv_drivers_version: interned.get(guest_text(|g| &g.pv_drivers_version)),
                    reboot_required: vm_reboot_required(v),
                    snapshots: snapshot_count,
                    oldest_snapshot,
                    tags: tags(&v.tags),
                    // The families sort their series; the order here does not matter.
                    disks: if v.is_control_domain {
                        Vec::new()
                    } else {
                        let mut own = disks.remove(reference.as_str()).unwrap_or_default();
                        own.shrink_to_fit();
                        own
                    },
                    vcpus: metrics
                        .map(|m| m.vcpus_number)
                        .filter(|n| live && *n > 0)
                        .unwrap_or(v.vcpus_at_startup),
                    memory_static_max: v.memory_static_max,
                    memory_static_min: v.memory_static_min,
                    memory_dynamic_max: v.memory_dynamic_max,
                    memory_dynamic_min: v.memory_dynamic_min,
                    start_time: metrics
                        .and_then(|m| parse_xapi_time(&m.start_time))
                        .filter(|t| live && *t > 0),
                    power_state: interned.get(&power_state),
                }
            })
            .collect::<Vec<VmState>>();
        let vms_by_uuid = vms
            .iter()
            .map(|v| {
                let entry = VmEntry {
                    uuid: v.vm.uuid.clone(),
                    name: v.vm.name.clone(),
                };
                (v.vm.uuid.clone(), entry)
            })
            .collect();
        let pbds = store
            .pbds
            .values()
            .filter_map(|p| {
                let sr = store.srs.get(&p.sr)?;
                let host = named_host(&p.host)?;
                let mut paths: Vec<PathCount> = p
                    .other_config
                    .iter()
                    .filter_map(|(k, v)| {
                        let scsi_id = k.strip_prefix("mpath-")?;
                        let (active, max) = parse_path_counts(v)?;
                        Some(PathCount {
                            scsi_id: Arc::from(scsi_id),
                            active,
                            max,
                        })
                    })
                    .collect();
                paths.sort_by(|a, b| a.scsi_id.cmp(&b.scsi_id));
                Some(PbdState {
                    sr: named_sr(&p.sr)?,
                    sr_type: Arc::from(sr.sr_type.as_str()),
                    host,
                    attached: p.currently_attached,
                    multipathed: p
                        .other_config
                        .get("multipathed")
                        .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                    paths,
                    target: storage_target(&p.device_config),
                })
            })
            .collect();
        let pifs = store
            .pifs
            .values()
            .filter_map(|p| {
                Some(PifState {
                    host: named_host(&p.host)?,
                    device: Arc::from(p.device.as_str()),
                    vlan: (p.vlan >= 0).then_some(p.vlan),
                    attached: p.currently_attached,
                    management: p.management,
                })
            })
            .collect();
        let pool = pool_record.map(|p| PoolState {
            pool: Named {
                name: Arc::from(p.name_label.as_str()),
                uuid: Arc::from(p.uuid.as_str()),
            },
            master: named_host(&p.master),
            ha_enabled: p.ha_enabled,
            ha_host_failures_to_tolerate: p.ha_host_failures_to_tolerate,
            ha_plan_exists_for: p.ha_plan_exists_for,
            ha_overcommitted: p.ha_overcommitted,
            default_sr: named_sr(&p.default_sr),
        });
        Inventory {
            hosts: host_list,
            hosts_by_uuid,
            vms_by_uuid,
            master_uuid,
            srs,
            state: State {
                pool,
                hosts,
                vms,
                pbds,
                pifs,
                messages: message_groups(&store.messages),
                certificates: certificates(store, named_host),
            },
            data_source_units: store.data_source_units.clone(),
        }
    }

    /// The unit XAPI declares for the host data source `name`, if the last full read asked
    /// for the units and some host has that source.
    pub fn data_source_unit(&self, name: &str) -> Option<&str> {
        self.data_source_units.get(name).map(AsRef::as_ref)
    }

    /// The host with this UUID.
    pub fn host(&self, uuid: &str) -> Option<&HostEntry> {
        self.hosts_by_uuid.get(uuid).map(|&i| &self.hosts[i])
    }

    /// The VM with this UUID.
    pub fn vm(&self, uuid: &str) -> Option<&VmEntry> {
        self.vms_by_uuid.get(uuid)
    }

    /// The host whose `address` is `address` (case-insensitive, brackets ignored).
    pub fn host_by_address(&self, address: &str) -> Option<&HostEntry> {
        let address = address.trim_start_matches('[').trim_end_matches(']');
        self.hosts
            .iter()
            .find(|h| h.address.eq_ignore_ascii_case(address))
    }

    /// Number of VMs known (templates and snapshots excluded).
    pub fn vm_count(&self) -> usize {
        self.vms_by_uuid.len()
    }
}

/// Where the SR behind a PBD lives, from the target keys of its `device_config`.
fn storage_target(config: &HashMap<String, String>) -> StorageTarget {
    let get = |k: &str| config.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let (Some(target), Some(iqn)) = (get("target"), get("targetIQN")) {
        return StorageTarget::Iscsi {
            target: Arc::from(target),
            iqn: Arc::from(iqn),
            port: Arc::from(get("port").unwrap_or("3260")),
        };
    }
    if let (Some(server), Some(path)) = (get("server"), get("serverpath")) {
        return StorageTarget::Nfs {
            server: Arc::from(server),
            path: Arc::from(path),
        };
    }
    if let Some(scsi_id) = get("SCSIid") {
        return StorageTarget::Fc {
            scsi_id: Arc::from(scsi_id),
        };
    }
    StorageTarget::Other
}

/// Unix seconds of the host's last boot from OCaml `string_of_float` text (`"1712345678."`);
/// `None` for `"0."` (xapi could not read it), absent or unreadable text.
fn boot_time(host: &records::Host) -> Option<f64> {
    parse_seconds(host.other_config.get("boot_time")?)
}

/// Positive finite seconds from decimal text, as OCaml and JavaScript print floats.
fn parse_seconds(text: &str) -> Option<f64> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0)
}

/// A `reboot_host*` guidance (xapi 1.303+), an applied `pool_update` that needs a reboot, or
/// — for hosts updated with yum, which leave both empty — Xen Orchestra's rule: an
/// `rpm_patch_installation_time` later than the boot. Without a known boot time the last
/// rule cannot tell, so it does not count.
pub fn host_reboot_required(host: &records::Host) -> bool {
    let guided = host
        .pending_guidances
        .iter()
        .any(|g| g.to_ascii_lowercase().starts_with("reboot_host"));
    let patched_since_boot = match (
        boot_time(host),
        host.other_config
            .get("rpm_patch_installation_time")
            .and_then(|t| parse_seconds(t)),
    ) {
        (Some(boot), Some(patched)) => patched > boot,
        _ => false,
    };
    guided || !host.updates_requiring_reboot.is_empty() || patched_since_boot
}

/// A `restart_vm` or `restart_device_model` guidance, or `requires_reboot`; fields an older
/// XAPI lacks read as empty.
pub fn vm_reboot_required(vm: &records::Vm) -> bool {
    vm.requires_reboot
        || vm.pending_guidances.iter().any(|g| {
            g.eq_ignore_ascii_case("restart_vm") || g.eq_ignore_ascii_case("restart_device_model")
        })
}

/// `major.minor.micro`, then `-build` when there is one; empty unless the first three are
/// known.
/// Storage manager's `"[active, max]"` path counts.
pub fn parse_path_counts(text: &str) -> Option<(u32, u32)> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (active, max) = inner.split_once(',')?;
    Some((active.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// XAPI's date-time, `YYYYMMDDTHH:MM:SSZ` (also with dashes, fractions or no `Z`), as Unix
/// seconds; `None` for anything else.
pub fn parse_xapi_time(text: &str) -> Option<i64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once('T')?;
    let date: String = date.chars().filter(|c| *c != '-').collect();
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = date[..4].parse().ok()?;
    let month: i64 = date[4..6].parse().ok()?;
    let day: i64 = date[6..].parse().ok()?;
    let time = time.split(['.', '+']).next()?;
    let mut parts = time.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xapi_times_and_path_counts() {
        assert_eq!(parse_xapi_time("19700101T00:00:00Z"), Some(0));
        assert_eq!(parse_xapi_time("20261126T06:47:42Z"), Some(1_795_675_662));
        assert_eq!(
            parse_xapi_time("2026-11-26T06:47:42.123Z"),
            Some(1_795_675_662)
        );
        assert_eq!(parse_xapi_time("20000229T12:00:00Z"), Some(951_825_600));
        assert_eq!(parse_xapi_time("yesterday"), None);
        assert_eq!(parse_xapi_time("20261326T06:47:42Z"), None);
        assert_eq!(parse_path_counts("[2, 4]"), Some((2, 4)));
        assert_eq!(parse_path_counts(" [4,4] "), Some((4, 4)));
        assert_eq!(parse_path_counts("[a, 4]"), None);
        assert_eq!(parse_path_counts("2/4"), None);
    }

    fn sr(uuid: &str) -> records::Sr {
        records::Sr {
            uuid: uuid.into(),
            name_label: format!("SR {uuid}"),
            ..Default::default()
        }
    }

    #[test]
    fn sr_prefix_resolves_only_when_unique() {
        let mut records = records::Records::new();
        records.insert(
            "a".into(),
            Box::new(sr("aaaaaaaa-1111-4000-8000-000000000001")),
        );
        records.insert(
            "b".into(),
            Box::new(sr("bbbbbbbb-1111-4000-8000-000000000001")),
        );
        records.insert(
            "c".into(),
            Box::new(sr("bbbbbbbb-2222-4000-8000-000000000002")),
        );
        let index = SrIndex::new(records.values().map(|s| &**s));
        assert_eq!(
            &*index.by_prefix("aaaaaaaa").unwrap().uuid,
            "aaaaaaaa-1111-4000-8000-000000000001"
        );
        assert!(index.by_prefix("bbbbbbbb").is_none());
        assert!(index.by_prefix("cccccccc").is_none());
        assert!(
            index
                .by_uuid("bbbbbbbb-2222-4000-8000-000000000002")
                .is_some()
        );
    }

    #[test]
    fn templates_and_snapshots_are_not_vms() {
        let mut vms = records::Records::new();
        vms.insert(
            "1".into(),
            Box::new(records::Vm {
                uuid: "t".into(),
                is_a_template: true,
                ..Default::default()
            }),
        );
        vms.insert(
            "2".into(),
            Box::new(records::Vm {
                uuid: "v".into(),
                name_label: "web".into(),
                ..Default::default()
            }),
        );
        let inv = Inventory::new(
            Default::default(),
            Default::default(),
            vms,
            Default::default(),
        );
        assert!(inv.vm("t").is_none());
        assert_eq!(&*inv.vm("v").unwrap().name, "web");
    }
}

//! The simulated pool's object model: pool, hosts, VMs (guests, dom0s, templates, a
//! snapshot), SRs, PBDs, PIFs, networks, VDIs, with seed-derived identities.
//!
//! Relations that XAPI stores on both ends (host.resident_VMs, SR.PBDs, VDI.VBDs…) are kept
//! on one end only and derived when records are built, so that later mutations (migrate,
//! add, remove) cannot leave the two ends disagreeing.

use super::SimConfig;
use super::rng::{SplitMix, uuid};

/// One XAPI object identity: its UUID and its opaque reference.
#[derive(Debug, Clone)]
pub(super) struct Id {
    pub(super) uuid: String,
    pub(super) opaque_ref: String,
}

impl Id {
    pub(super) fn new(seed: u64, class: &str, n: u64) -> Self {
        Id {
            uuid: uuid(seed, class, n),
            opaque_ref: format!("OpaqueRef:{}", uuid(seed, &format!("ref/{class}"), n)),
        }
    }
}

pub(super) const NULL_REF: &str = "OpaqueRef:NULL";

#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub(super) id: Id,
    pub(super) name: String,
    pub(super) master: usize,
    /// Index into `Model::srs` of the default SR.
    pub(super) default_sr: usize,
    pub(super) ha_enabled: bool,
    pub(super) ha_host_failures_to_tolerate: i64,
    pub(super) ha_plan_exists_for: i64,
    pub(super) ha_overcommitted: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Host {
    pub(super) id: Id,
    pub(super) metrics: Id,
    pub(super) name: String,
    pub(super) address: String,
    pub(super) pcpus: usize,
    /// One `host_cpu` object per physical CPU.
    pub(super) cpus: Vec<Id>,
    /// Physical memory in bytes.
    pub(super) memory_total: i64,
    /// Seconds (0–4) by which this host's 5 s RRD update lags a multiple of 5.
    pub(super) rrd_phase: i64,
    pub(super) cpu_speed_mhz: f64,
    pub(super) iqn: String,
    pub(super) boot_time: i64,
    /// `host.enabled`; false = maintenance mode.
    pub(super) enabled: bool,
    /// `host_metrics.live`: the master still hears this host's heartbeat.
    pub(super) live: bool,
    /// `host.multipathing`, mirrored in `other_config["multipathing"]` as xapi does.
    pub(super) multipathing: bool,
    /// `host_metrics.last_updated`: a stored time, so that records do not change by
    /// themselves and `event.from` reports only real changes.
    pub(super) metrics_updated: i64,
    pub(super) tags: Vec<String>,
    /// `host.pending_guidances` (xapi ≥ 1.303): `update_guidances` enum names.
    pub(super) pending_guidances: Vec<String>,
    /// `host.updates_requiring_reboot`: refs of `pool_update` objects.
    pub(super) updates_requiring_reboot: Vec<String>,
    /// `other_config["rpm_patch_installation_time"]` in milliseconds since the epoch, as
    /// Xen Orchestra writes it after a yum update; `None` = key absent.
    pub(super) rpm_patch_installation_ms: Option<i64>,
    /// `license_params["expiry"]`, epoch seconds; `None` = `never`.
    pub(super) license_expiry: Option<i64>,
    /// Data sources of a plugin installed on the host beyond the standard ones, with the
    /// unit each declares: (name, units).
    pub(super) plugin_sources: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Power {
    Running,
    Halted,
    Paused,
    Suspended,
}

impl Power {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Power::Running => "Running",
            Power::Halted => "Halted",
            Power::Paused => "Paused",
            Power::Suspended => "Suspended",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Power> {
        match s {
            "Running" => Some(Power::Running),
            "Halted" => Some(Power::Halted),
            "Paused" => Some(Power::Paused),
            "Suspended" => Some(Power::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VmKind {
    Guest,
    ControlDomain,
    Template,
    Snapshot,
}

#[derive(Debug, Clone)]
pub(super) struct Vif {
    pub(super) id: Id,
    pub(super) device: u32,
    pub(super) mac: String,
    pub(super) network: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Vbd {
    pub(super) id: Id,
    /// Guest device name (`xvda`…); also the RRD's `vbd_<dev>_*` name.
    pub(super) device: String,
    pub(super) userdevice: String,
    /// Opaque ref of the VDI; `None` = an empty CD drive. Refs, not indices, so that VDIs
    /// can later be removed without renumbering.
    pub(super) vdi: Option<String>,
    pub(super) is_cd: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Vm {
    pub(super) id: Id,
    pub(super) metrics: Id,
    pub(super) guest_metrics: Option<Id>,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) kind: VmKind,
    pub(super) power: Power,
    pub(super) resident_on: Option<usize>,
    pub(super) affinity: Option<usize>,
    pub(super) domid: i64,
    pub(super) vcpus: usize,
    pub(super) memory_static_max: i64,
    pub(super) memory_dynamic_max: i64,
    pub(super) memory_dynamic_min: i64,
    pub(super) memory_static_min: i64,
    pub(super) vifs: Vec<Vif>,
    pub(super) vbds: Vec<Vbd>,
    /// Template (or OS) this VM was made from; also drives guest-metrics `os_version`.
    pub(super) os: String,
    pub(super) tags: Vec<String>,
    /// For a snapshot: opaque ref of the VM it is a snapshot of.
    pub(super) snapshot_of: Option<String>,
    pub(super) snapshot_time: i64,
    pub(super) start_time: i64,
    /// `VM_metrics.install_time`, fixed at creation.
    pub(super) install_time: i64,
    /// `VM_guest_metrics.last_updated`.
    pub(super) guest_updated: i64,
    pub(super) is_default_template: bool,
    /// `hvm`, `pv`, `pvh` or `pv_in_pvh`.
    pub(super) domain_type: &'static str,
    /// Runs a guest agent, so it gets guest metrics whenever it has a domain.
    pub(super) has_agent: bool,
    /// Where it last ran, so that a restart lands there again.
    pub(super) last_host: Option<usize>,
    /// `VM.pending_guidances` (xapi ≥ 1.303).
    pub(super) pending_guidances: Vec<String>,
    /// `VM.requires_reboot`.
    pub(super) requires_reboot: bool,
}

impl Vm {
    pub(super) fn is_control_domain(&self) -> bool {
        self.kind == VmKind::ControlDomain
    }
    pub(super) fn is_template(&self) -> bool {
        self.kind == VmKind::Template
    }
    pub(super) fn is_snapshot(&self) -> bool {
        self.kind == VmKind::Snapshot
    }
    /// Has a live domain (running or paused) whose RRD sits on `resident_on`.
    pub(super) fn has_domain(&self) -> bool {
        matches!(self.power, Power::Running | Power::Paused) && self.resident_on.is_some()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Sr {
    pub(super) id: Id,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) sr_type: String,
    pub(super) content_type: String,
    pub(super) shared: bool,
    pub(super) physical_size: i64,
    pub(super) physical_utilisation: i64,
    pub(super) virtual_allocation: i64,
    pub(super) sm_config: Vec<(String, String)>,
    pub(super) other_config: Vec<(String, String)>,
    /// Left out of `SR.*` record calls while hosts keep reporting its I/O (a forgotten SR
    /// whose tapdisks are still active): the exporter then meets an unknown SR prefix.
    pub(super) hidden: bool,
    pub(super) tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Pbd {
    pub(super) id: Id,
    pub(super) host: usize,
    pub(super) sr: usize,
    pub(super) attached: bool,
    pub(super) device_config: Vec<(String, String)>,
    pub(super) other_config: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(super) struct Network {
    pub(super) id: Id,
    pub(super) name: String,
    pub(super) bridge: String,
    pub(super) mtu: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Pif {
    pub(super) id: Id,
    pub(super) metrics: Id,
    pub(super) host: usize,
    pub(super) device: String,
    pub(super) network: usize,
    pub(super) mac: String,
    pub(super) management: bool,
    pub(super) physical: bool,
    pub(super) ip: String,
    /// Opaque ref of the Bond this PIF is master of (bond0 only).
    pub(super) bond_master_of: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Vdi {
    pub(super) id: Id,
    pub(super) name: String,
    pub(super) sr: usize,
    pub(super) virtual_size: i64,
    pub(super) physical_utilisation: i64,
    pub(super) is_snapshot: bool,
    /// Opaque ref of the VDI this one is a snapshot of.
    pub(super) snapshot_of: Option<String>,
    pub(super) is_iso: bool,
}

/// One XAPI `message` (an alert). Messages live outside xapi's database: they have their
/// own generation numbers, which `event.from` tokens carry after the comma.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub(super) id: Id,
    pub(super) name: String,
    /// 1 (most severe) … 5.
    pub(super) priority: i64,
    /// `VM`, `Host`, `SR`, `Pool`, `VMPP`, `VMSS`, `PVS_proxy`, `VDI` or `Certificate`.
    pub(super) cls: String,
    pub(super) obj_uuid: String,
    /// Epoch seconds.
    pub(super) timestamp: i64,
    pub(super) body: String,
    /// Message generation at creation.
    pub(super) generation: u64,
}

/// `Certificate.type` (xapi ≥ 1.294).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CertKind {
    Ca,
    Host,
    HostInternal,
}

impl CertKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CertKind::Ca => "ca",
            CertKind::Host => "host",
            CertKind::HostInternal => "host_internal",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Certificate {
    pub(super) id: Id,
    /// Only `ca` certificates have one.
    pub(super) name: String,
    pub(super) kind: CertKind,
    pub(super) host: Option<usize>,
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    /// `AB:CD:…`.
    pub(super) sha256: String,
    pub(super) sha1: String,
}

/// Message deletions `event.from` can still report: xapi keeps up to 1024 and then cuts
/// back to the newest 512 (xapi_message.ml `destroy_real`).
pub(super) const DELETED_MESSAGES_MAX: usize = 1024;
pub(super) const DELETED_MESSAGES_KEPT: usize = 512;

/// The whole pool. Mutated only through methods that bump `generation` (and `rrd_epoch`
/// when the set of RRDs or their data sources may change).
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub(super) seed: u64,
    pub(super) pool: Pool,
    pub(super) hosts: Vec<Host>,
    pub(super) vms: Vec<Vm>,
    pub(super) srs: Vec<Sr>,
    pub(super) pbds: Vec<Pbd>,
    pub(super) networks: Vec<Network>,
    pub(super) pifs: Vec<Pif>,
    pub(super) vdis: Vec<Vdi>,
    pub(super) messages: Vec<Message>,
    /// (message generation of the deletion, ref), oldest first.
    pub(super) deleted_messages: std::collections::VecDeque<(u64, String)>,
    /// The newest message generation used.
    pub(super) message_generation: u64,
    pub(super) certificates: Vec<Certificate>,
    /// Bumped on every change, so that the event log rebuilds records only after one.
    pub(super) generation: u64,
    /// Bumped when RRD layouts (which VMs run where, their devices) may have changed.
    pub(super) rrd_epoch: u64,
    /// Next serial for objects created after start, so new identities never repeat.
    next_serial: u64,
    /// Creation index of the next guest (drives default names and device counts).
    next_guest: usize,
    vm_names: Vec<String>,
    vcpus: usize,
}

/// Objects that carry an [`Id`], so that record builders can list references uniformly.
pub(super) trait HasId {
    fn id(&self) -> &Id;
}

macro_rules! has_id {
    ($($t:ty),*) => {
        $(impl HasId for $t {
            fn id(&self) -> &Id {
                &self.id
            }
        })*
    };
}

has_id!(Vif, Vbd, Vm, Pbd, Pif, Vdi);

/// The opaque references of the objects `keep` selects, in order.
pub(super) fn refs_where<'a, T: HasId + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    keep: impl Fn(&T) -> bool,
) -> Vec<String> {
    items
        .into_iter()
        .filter(|item| keep(item))
        .map(|item| item.id().opaque_ref.clone())
        .collect()
}

const GUEST_PREFIXES: &[&str] = &[
    "web",
    "db",
    "app",
    "cache",
    "ci-runner",
    "mail",
    "dns",
    "proxy",
    "mon",
    "backup",
    "git",
    "vpn",
];

const OS_TEMPLATES: &[&str] = &[
    "Debian Bookworm 12",
    "Ubuntu Noble Numbat 24.04",
    "Rocky Linux 9",
    "AlmaLinux 9",
    "CentOS Stream 9",
    "Windows Server 2022 (64-bit)",
    "Windows 11",
    "Oracle Linux 9",
    "SUSE Linux Enterprise Server 15 SP5",
    "Windows 10 (64-bit)",
];

const GIB: i64 = 1 << 30;
/// How long before their first start the initial VMs were installed.
const INSTALLED_BEFORE_START: i64 = 86_400 * 30;

impl Model {
    /// Builds the initial pool. `addresses[i]` is host i's management IP.
    pub(super) fn new(cfg: &SimConfig, addresses: &[String], now: i64) -> Model {
        let seed = cfg.seed;
        let mut rng = SplitMix::for_purpose(seed, "model");
        let n_hosts = addresses.len().max(1);

        let hosts: Vec<Host> = (0..n_hosts)
            .map(|i| {
                let n = i as u64;
                let name = format!("xcp-ng-{:02}", i + 1);
                // 256 GiB-class hosts with a little per-host variation, like real DIMM maps.
                let memory_total = 256 * GIB + rng.range_i64(0, 64) * 64 * 1024 * 1024;
                Host {
                    id: Id::new(seed, "host", n),
                    metrics: Id::new(seed, "host_metrics", n),
                    name,
                    address: addresses.get(i).cloned().unwrap_or_default(),
                    pcpus: cfg.pcpus.max(1),
                    cpus: (0..cfg.pcpus.max(1))
                        .map(|c| Id::new(seed, "host_cpu", (n << 16) | c as u64))
                        .collect(),
                    memory_total,
                    rrd_phase: rng.range_i64(0, 4),
                    cpu_speed_mhz: 2394.374,
                    iqn: format!("iqn.2024-01.invalid.lab:{:08x}", rng.next_u64() as u32),
                    boot_time: now - 86_400 * 7 - rng.range_i64(0, 86_400),
                    enabled: true,
                    live: true,
                    multipathing: true,
                    metrics_updated: now,
                    tags: Vec::new(),
                    pending_guidances: Vec::new(),
                    updates_requiring_reboot: Vec::new(),
                    rpm_patch_installation_ms: None,
                    license_expiry: None,
                    plugin_sources: Vec::new(),
                }
            })
            .collect();
        let mut hosts = hosts;
        for (h, host) in hosts.iter_mut().enumerate() {
            host_lifecycle(h, host, now);
        }

        let networks = vec![
            Network {
                id: Id::new(seed, "network", 0),
                name: "Pool-wide network associated with eth0".into(),
                bridge: "xenbr0".into(),
                mtu: 1500,
            },
            Network {
                id: Id::new(seed, "network", 1),
                name: "Pool-wide network associated with eth1".into(),
                bridge: "xenbr1".into(),
                mtu: 1500,
            },
            Network {
                id: Id::new(seed, "network", 2),
                name: "Bond 0".into(),
                bridge: "xapi1".into(),
                mtu: 9000,
            },
        ];

        let mut pifs = Vec::new();
        for (h, host) in hosts.iter().enumerate() {
            for (k, dev) in ["eth0", "eth1", "bond0"].iter().enumerate() {
                let n = (h * 3 + k) as u64;
                pifs.push(Pif {
                    id: Id::new(seed, "PIF", n),
                    metrics: Id::new(seed, "PIF_metrics", n),
                    host: h,
                    device: (*dev).to_string(),
                    network: k,
                    mac: mac(seed, "pif", n),
                    management: k == 0,
                    physical: k < 2,
                    ip: if k == 0 {
                        host.address.clone()
                    } else {
                        String::new()
                    },
                    bond_master_of: (k == 2)
                        .then(|| format!("OpaqueRef:{}", uuid(seed, "ref/Bond", h as u64))),
                });
            }
        }

        // SRs: per-host local storage and DVD drives, then the shared ones.
        let mut srs = Vec::new();
        let mut pbds = Vec::new();
        let mut pbd_n = 0u64;
        let mut add_pbd = |pbds: &mut Vec<Pbd>,
                           host: usize,
                           sr: usize,
                           dc: Vec<(String, String)>,
                           oc: Vec<(String, String)>| {
            pbds.push(Pbd {
                id: Id::new(seed, "PBD", pbd_n),
                host,
                sr,
                attached: true,
                device_config: dc,
                other_config: oc,
            });
            pbd_n += 1;
        };
        let mut local_srs = Vec::new();
        for h in 0..hosts.len() {
            let size = 900 * GIB + rng.range_i64(0, 100) * GIB;
            let used = size / 100 * rng.range_i64(25, 60);
            let serial = format!("3600508b1001c{:011x}", h);
            let idx = srs.len();
            local_srs.push(idx);
            srs.push(Sr {
                id: Id::new(seed, "SR", idx as u64),
                name: "Local storage".into(),
                description: String::new(),
                sr_type: "ext".into(),
                hidden: false,
                tags: Vec::new(),
                content_type: "user".into(),
                shared: false,
                physical_size: size,
                physical_utilisation: used,
                virtual_allocation: used + size / 100 * rng.range_i64(5, 30),
                sm_config: kv(&[("devserial", &format!("scsi-{serial}"))]),
                other_config: kv(&[
                    ("i18n-original-value-name_label", "Local storage"),
                    ("i18n-key", "local-storage"),
                ]),
            });
            add_pbd(
                &mut pbds,
                h,
                idx,
                kv(&[("device", &format!("/dev/disk/by-id/scsi-{serial}-part3"))]),
                Vec::new(),
            );
            let idx = srs.len();
            srs.push(Sr {
                id: Id::new(seed, "SR", idx as u64),
                name: "DVD drives".into(),
                description: "Physical DVD drives".into(),
                sr_type: "udev".into(),
                hidden: false,
                tags: Vec::new(),
                content_type: "iso".into(),
                shared: false,
                physical_size: 0,
                physical_utilisation: 0,
                virtual_allocation: 0,
                sm_config: kv(&[("type", "cd")]),
                other_config: kv(&[("i18n-key", "local-hotplug-cd")]),
            });
            add_pbd(
                &mut pbds,
                h,
                idx,
                kv(&[("location", "/dev/xapi/cd")]),
                Vec::new(),
            );
        }
        let nfs = srs.len();
        {
            let size = 8 * 1024 * GIB;
            let used = size / 100 * rng.range_i64(30, 70);
            srs.push(Sr {
                id: Id::new(seed, "SR", nfs as u64),
                name: "NFS VM storage".into(),
                description: "NFS SR [nfs01.lab.invalid:/export/vms]".into(),
                sr_type: "nfs".into(),
                hidden: false,
                tags: Vec::new(),
                content_type: "user".into(),
                shared: true,
                physical_size: size,
                physical_utilisation: used,
                virtual_allocation: used + size / 100 * rng.range_i64(5, 25),
                sm_config: kv(&[("nosubdir", "false")]),
                other_config: Vec::new(),
            });
        }
        let iscsi = srs.len();
        let scsi_id = format!("3600a0980383030534{:014x}", rng.next_u64() >> 8);
        {
            let size = 4 * 1024 * GIB;
            let used = size / 100 * rng.range_i64(40, 80);
            srs.push(Sr {
                id: Id::new(seed, "SR", iscsi as u64),
                name: "iSCSI SAN".into(),
                description: "iSCSI SR [san01.lab.invalid (iqn.2010-01.invalid.lab:san01.vmstore)]"
                    .into(),
                sr_type: "lvmoiscsi".into(),
                hidden: false,
                tags: Vec::new(),
                content_type: "user".into(),
                shared: true,
                physical_size: size,
                physical_utilisation: used,
                virtual_allocation: used,
                sm_config: kv(&[
                    ("allocation", "thick"),
                    ("use_vhd", "true"),
                    ("multipathable", "true"),
                    ("devserial", &format!("scsi-{scsi_id}")),
                ]),
                other_config: kv(&[("auto-scan", "false")]),
            });
        }
        let iso = srs.len();
        srs.push(Sr {
            id: Id::new(seed, "SR", iso as u64),
            name: "ISO library".into(),
            description: "NFS ISO library".into(),
            sr_type: "iso".into(),
            hidden: false,
            tags: Vec::new(),
            content_type: "iso".into(),
            shared: true,
            physical_size: 0,
            physical_utilisation: 0,
            virtual_allocation: 0,
            sm_config: Vec::new(),
            other_config: kv(&[("auto-scan", "true")]),
        });
        for h in 0..hosts.len() {
            add_pbd(
                &mut pbds,
                h,
                nfs,
                kv(&[
                    ("server", "nfs01.lab.invalid"),
                    ("serverpath", "/export/vms"),
                    ("nfsversion", "4.1"),
                ]),
                Vec::new(),
            );
            add_pbd(
                &mut pbds,
                h,
                iscsi,
                kv(&[
                    ("target", "san01.lab.invalid"),
                    ("targetIQN", "iqn.2010-01.invalid.lab:san01.vmstore"),
                    ("SCSIid", &scsi_id),
                    ("port", "3260"),
                    (
                        "multihomelist",
                        "san01.lab.invalid:3260,san02.lab.invalid:3260",
                    ),
                    ("chapuser", "xcp-ng-pool"),
                    // xapi moves `*password` keys into Secret objects and keeps the
                    // secret's UUID under `*password_secret` (xapi_secret.ml).
                    ("chappassword_secret", &uuid(seed, "secret/chap", h as u64)),
                ]),
                kv(&[
                    (&format!("mpath-{scsi_id}"), "[2, 2]"),
                    ("multipathed", "true"),
                    ("iscsi_sessions", "2"),
                ]),
            );
            add_pbd(
                &mut pbds,
                h,
                iso,
                kv(&[
                    ("location", "nfs01.lab.invalid:/export/iso"),
                    ("type", "nfs_iso"),
                ]),
                Vec::new(),
            );
        }
        // The Fibre Channel SR comes last so that every older identity stays put.
        let hba = srs.len();
        let mut hba_rng = SplitMix::for_purpose(seed, "hba");
        let hba_scsi_id = format!("3600a098038314e6f6d{:013x}", hba_rng.next_u64() >> 12);
        {
            let size = 16 * 1024 * GIB;
            let used = size / 100 * hba_rng.range_i64(20, 50);
            srs.push(Sr {
                id: Id::new(seed, "SR", hba as u64),
                name: "FC SAN".into(),
                description: "Hardware HBA SR [fc-array01 LUN 3]".into(),
                sr_type: "lvmohba".into(),
                hidden: false,
                tags: Vec::new(),
                content_type: "user".into(),
                shared: true,
                physical_size: size,
                physical_utilisation: used,
                virtual_allocation: used,
                sm_config: kv(&[
                    ("allocation", "thick"),
                    ("use_vhd", "true"),
                    ("multipathable", "true"),
                    ("devserial", &format!("scsi-{hba_scsi_id}")),
                ]),
                other_config: Vec::new(),
            });
        }
        for h in 0..hosts.len() {
            add_pbd(
                &mut pbds,
                h,
                hba,
                kv(&[("SCSIid", &hba_scsi_id)]),
                kv(&[
                    ("multipathed", "true"),
                    (&format!("mpath-{hba_scsi_id}"), "[4, 4]"),
                ]),
            );
        }

        let vdis = [
            "debian-12.8.0-amd64-netinst.iso",
            "ubuntu-24.04.1-live-server-amd64.iso",
        ]
        .iter()
        .enumerate()
        .map(|(k, name)| Vdi {
            id: Id::new(seed, "VDI/iso", k as u64),
            name: (*name).to_string(),
            sr: iso,
            virtual_size: 700 * 1024 * 1024 + k as i64 * 1_900 * 1024 * 1024,
            physical_utilisation: 700 * 1024 * 1024 + k as i64 * 1_900 * 1024 * 1024,
            is_snapshot: false,
            snapshot_of: None,
            is_iso: true,
        })
        .collect();

        srs[nfs].tags = vec!["shared".into(), "tier=gold".into()];
        // Tags are free text: quotes, backslashes, newlines and non-ASCII all occur.
        srs[iscsi].tags = vec![
            "SAN \"primary\"".into(),
            "path\\to\\lun".into(),
            "équipe stockage ☃".into(),
        ];
        let pool = Pool {
            id: Id::new(seed, "pool", 0),
            name: "lab-pool".into(),
            master: 0,
            default_sr: nfs,
            ha_enabled: false,
            ha_host_failures_to_tolerate: 0,
            ha_plan_exists_for: 0,
            ha_overcommitted: false,
        };

        let mut model = Model {
            seed,
            pool,
            hosts,
            vms: Vec::new(),
            srs,
            pbds,
            networks,
            pifs,
            vdis,
            messages: Vec::new(),
            deleted_messages: std::collections::VecDeque::new(),
            message_generation: 0,
            certificates: Vec::new(),
            generation: 1,
            rrd_epoch: 1,
            next_serial: 0,
            next_guest: 0,
            vm_names: cfg.vm_names.clone(),
            vcpus: cfg.vcpus.max(1),
        };

        for h in 0..model.hosts.len() {
            model.add_control_domain(h, now);
        }
        for t in 0..cfg.templates {
            model.add_template(t);
        }
        let mut first_guest = None;
        for (h, &local) in local_srs.iter().enumerate() {
            for _ in 0..cfg.vms_per_host {
                let g = model.add_guest(Some(h), now, local, nfs, iscsi);
                first_guest.get_or_insert(g);
            }
        }
        for _ in 0..cfg.halted_vms {
            let g = model.add_guest(None, now, local_srs[0], nfs, iscsi);
            first_guest.get_or_insert(g);
        }
        if let Some(g) = first_guest {
            model.add_snapshot(g, now);
        }
        // Last, so that VDI indices (and the locations derived from them) stay put.
        model.vdis.push(Vdi {
            id: Id::new(seed, "VDI/hba", 0),
            name: "archive".into(),
            sr: hba,
            virtual_size: 2 * 1024 * GIB,
            physical_utilisation: 2 * 1024 * GIB,
            is_snapshot: false,
            snapshot_of: None,
            is_iso: false,
        });
        model.add_initial_messages(now);
        model
    }

    /// Tens of messages at most whatever the pool size: a few per host, the storage, the
    /// pool, and the first running guests.
    fn add_initial_messages(&mut self, now: i64) {
        let add = |m: &mut Model, name: &str, priority, cls: &str, obj: String, age, body| {
            m.push_message(name, priority, cls, &obj, now - age, body);
        };
        let pool = self.pool.id.uuid.clone();
        add(
            self,
            "POOL_MASTER_TRANSITION",
            4,
            "Pool",
            pool,
            86_400 * 6,
            "The pool master changed to xcp-ng-01".to_string(),
        );
        for h in 0..self.hosts.len().min(16) {
            let host = self.hosts[h].id.uuid.clone();
            if h % 3 == 1 {
                add(
                    self,
                    "LICENSE_EXPIRES_SOON",
                    2,
                    "Host",
                    host.clone(),
                    3_600 * 5,
                    "The license of this host expires in 40 days".to_string(),
                );
            }
            if h % 2 == 0 {
                // perfmon's alarm body: the value, then the XML of the triggering config.
                add(
                    self,
                    "ALARM",
                    3,
                    "Host",
                    host,
                    600 + 60 * h as i64,
                    "value: 0.953000\nconfig:\n<variable>\n\t<name value=\"cpu_usage\"/>\n\t<alarm_trigger_level value=\"0.9\"/>\n</variable>\n".to_string(),
                );
            }
        }
        if let Some(sr) = self.srs.iter().find(|s| s.sr_type == "lvmoiscsi") {
            let sr = sr.id.uuid.clone();
            add(
                self,
                "MULTIPATH_PERIODIC_ALERT",
                3,
                "SR",
                sr,
                1_800,
                "Unhealthy paths:\n[20260101T00:00:00Z] host=xcp-ng-01; SCSI id=3600a0980383030534; path=1/2".to_string(),
            );
        }
        let guests: Vec<(String, String)> = self
            .vms
            .iter()
            .filter(|v| v.kind == VmKind::Guest && v.has_domain())
            .take(20)
            .map(|v| (v.id.uuid.clone(), v.name.clone()))
            .collect();
        for (k, (uuid, name)) in guests.into_iter().enumerate() {
            add(
                self,
                "VM_STARTED",
                5,
                "VM",
                uuid,
                3_600 + 97 * k as i64,
                format!("VM '{name}' started"),
            );
        }
    }

    /// Adds a message with the next message generation; returns its index.
    pub(super) fn push_message(
        &mut self,
        name: &str,
        priority: i64,
        cls: &str,
        obj_uuid: &str,
        timestamp: i64,
        body: String,
    ) -> usize {
        let n = self.serial();
        self.message_generation += 1;
        self.messages.push(Message {
            id: Id::new(self.seed, "message", n),
            name: name.to_string(),
            priority,
            cls: cls.to_string(),
            obj_uuid: obj_uuid.to_string(),
            timestamp,
            body,
            generation: self.message_generation,
        });
        self.messages.len() - 1
    }

    /// Certificate records as the pool's xapi generation keeps them. `fingerprints[h]` is
    /// the SHA-256 (`AB:CD:…`) of the certificate host h serves, `served` its validity.
    pub(super) fn add_certificates(
        &mut self,
        legacy: bool,
        fingerprints: &[(String, String)],
        ca: (String, String),
        served: (i64, i64),
    ) {
        let seed = self.seed;
        let n_hosts = self.hosts.len();
        let fp = |h: usize| {
            fingerprints.get(h).cloned().unwrap_or_else(|| {
                (
                    colon_hex(&uuid(seed, "cert/sha256", h as u64), 32),
                    colon_hex(&uuid(seed, "cert/sha1", h as u64), 20),
                )
            })
        };
        if legacy {
            // 1.249 keeps a record only for a certificate installed with
            // host.install_server_certificate: here host 0's; the others serve their
            // default self-signed one, which has none.
            let (sha256, sha1) = fp(0);
            let n = self.serial();
            self.certificates.push(Certificate {
                id: Id::new(seed, "Certificate", n),
                name: String::new(),
                kind: CertKind::Host,
                host: Some(0),
                not_before: served.0,
                not_after: served.1,
                sha256,
                sha1,
            });
            return;
        }
        let n = self.serial();
        self.certificates.push(Certificate {
            id: Id::new(seed, "Certificate", n),
            name: "lab-root-ca".into(),
            kind: CertKind::Ca,
            host: None,
            not_before: served.0,
            not_after: served.1,
            sha256: ca.0,
            sha1: ca.1,
        });
        for h in 0..n_hosts {
            // The last host of a pool of two or more was never given a `host` record (an
            // XCP-ng 8.2 install upgraded in place): clients read its served certificate.
            if n_hosts >= 2 && h == n_hosts - 1 {
                continue;
            }
            let (sha256, sha1) = fp(h);
            let n = self.serial();
            self.certificates.push(Certificate {
                id: Id::new(seed, "Certificate", n),
                name: String::new(),
                kind: CertKind::Host,
                host: Some(h),
                not_before: served.0,
                not_after: served.1,
                sha256,
                sha1,
            });
            // The pool-internal certificate xapi generates at first boot, ten years long.
            let issued = self.hosts[h].boot_time - 86_400 * 30;
            let n = self.serial();
            self.certificates.push(Certificate {
                id: Id::new(seed, "Certificate", n),
                name: String::new(),
                kind: CertKind::HostInternal,
                host: Some(h),
                not_before: issued,
                not_after: issued + 86_400 * 3_650,
                sha256: colon_hex(&uuid(seed, "cert/internal/sha256", h as u64), 32),
                sha1: colon_hex(&uuid(seed, "cert/internal/sha1", h as u64), 20),
            });
        }
    }

    pub(super) fn serial(&mut self) -> u64 {
        let n = self.next_serial;
        self.next_serial += 1;
        n
    }

    fn add_control_domain(&mut self, h: usize, now: i64) {
        let n = self.serial();
        let seed = self.seed;
        let host = &self.hosts[h];
        let mut rng = SplitMix::for_purpose(seed, &format!("dom0/{h}"));
        let mem = 4 * GIB + rng.range_i64(0, 63) * 1024 * 1024;
        let vm = Vm {
            id: Id::new(seed, "VM", n),
            metrics: Id::new(seed, "VM_metrics", n),
            guest_metrics: None,
            name: format!("Control domain on host: {}", host.name),
            description: "The domain which manages physical devices and manages other domains"
                .into(),
            kind: VmKind::ControlDomain,
            power: Power::Running,
            resident_on: Some(h),
            affinity: Some(h),
            domid: 0,
            vcpus: host.pcpus.clamp(1, 8),
            memory_static_max: mem,
            memory_dynamic_max: mem,
            memory_dynamic_min: mem,
            memory_static_min: mem,
            vifs: Vec::new(),
            vbds: Vec::new(),
            os: "XCP-ng".into(),
            tags: Vec::new(),
            snapshot_of: None,
            snapshot_time: 0,
            start_time: host.boot_time + 30,
            install_time: host.boot_time + 30 - INSTALLED_BEFORE_START,
            guest_updated: now,
            is_default_template: false,
            domain_type: "pv",
            has_agent: false,
            last_host: Some(h),
            pending_guidances: Vec::new(),
            requires_reboot: false,
        };
        self.vms.push(vm);
    }

    fn add_template(&mut self, t: usize) {
        let n = self.serial();
        let base = OS_TEMPLATES[t % OS_TEMPLATES.len()];
        let name = if t < OS_TEMPLATES.len() {
            base.to_string()
        } else {
            format!("{base} ({})", t / OS_TEMPLATES.len() + 1)
        };
        let vm = Vm {
            id: Id::new(self.seed, "VM", n),
            metrics: Id::new(self.seed, "VM_metrics", n),
            guest_metrics: None,
            description: format!("Template for {name}"),
            os: base.to_string(),
            name,
            kind: VmKind::Template,
            power: Power::Halted,
            resident_on: None,
            affinity: None,
            domid: -1,
            vcpus: 1,
            memory_static_max: 2 * GIB,
            memory_dynamic_max: 2 * GIB,
            memory_dynamic_min: 2 * GIB,
            memory_static_min: GIB / 2,
            vifs: Vec::new(),
            vbds: Vec::new(),
            tags: Vec::new(),
            snapshot_of: None,
            snapshot_time: 0,
            start_time: 0,
            install_time: 0,
            guest_updated: 0,
            is_default_template: true,
            domain_type: "hvm",
            has_agent: false,
            last_host: None,
            pending_guidances: Vec::new(),
            requires_reboot: false,
        };
        self.vms.push(vm);
    }

    /// Adds a guest, running on `host` or halted when `None`; returns its index.
    fn add_guest(
        &mut self,
        host: Option<usize>,
        now: i64,
        local_sr: usize,
        nfs: usize,
        iscsi: usize,
    ) -> usize {
        let n = self.serial();
        let g = self.next_guest;
        self.next_guest += 1;
        let seed = self.seed;
        let mut rng = SplitMix::for_purpose(seed, &format!("guest/{n}"));
        let name = self.vm_names.get(g).cloned().unwrap_or_else(|| {
            format!("{}-{:03}", GUEST_PREFIXES[g % GUEST_PREFIXES.len()], g + 1)
        });
        let mem = [1, 2, 4, 8, 16][rng.below(5) as usize] * GIB;
        let os = OS_TEMPLATES[g % OS_TEMPLATES.len()].to_string();
        // Guests alternate between one and two VIFs; every third guest has a data disk.
        let n_vifs = 1 + g % 2;
        let vifs = (0..n_vifs)
            .map(|k| Vif {
                id: Id::new(seed, "VIF", n * 4 + k as u64),
                device: k as u32,
                mac: mac(seed, "vif", n * 4 + k as u64),
                network: k % 2,
            })
            .collect();
        let mut vbds = Vec::new();
        let disk_sr = if g.is_multiple_of(2) { nfs } else { local_sr };
        let xvda = self.add_vdi(
            &format!("{name} xvda"),
            disk_sr,
            (20 + 10 * rng.below(4) as i64) * GIB,
        );
        vbds.push(Vbd {
            id: Id::new(seed, "VBD", n * 4),
            device: "xvda".into(),
            userdevice: "0".into(),
            vdi: Some(xvda),
            is_cd: false,
        });
        if g % 3 == 2 {
            let xvdb = self.add_vdi(
                &format!("{name} xvdb"),
                iscsi,
                (50 + 50 * rng.below(4) as i64) * GIB,
            );
            vbds.push(Vbd {
                id: Id::new(seed, "VBD", n * 4 + 1),
                device: "xvdb".into(),
                userdevice: "1".into(),
                vdi: Some(xvdb),
                is_cd: false,
            });
        }
        // Every fifth guest still has an installer ISO in its drive; the others' are empty.
        let iso = g
            .is_multiple_of(5)
            .then(|| {
                let isos: Vec<&Vdi> = self.vdis.iter().filter(|d| d.is_iso).collect();
                isos.get(g / 5 % isos.len().max(1))
                    .map(|d| d.id.opaque_ref.clone())
            })
            .flatten();
        vbds.push(Vbd {
            id: Id::new(seed, "VBD", n * 4 + 3),
            device: "xvdd".into(),
            userdevice: "3".into(),
            vdi: iso,
            is_cd: true,
        });
        let running = host.is_some();
        let domid = if running {
            self.vms
                .iter()
                .filter(|v| v.resident_on == host && v.domid > 0)
                .count() as i64
                + 1
        } else {
            -1
        };
        let start_time = if running {
            now - 3_600 * (1 + rng.range_i64(0, 240))
        } else {
            0
        };
        // Some guests have no guest agent, as in real pools.
        let has_agent = g % 5 != 4;
        // Mostly HVM, with the PV-ish modes Linux guests can use mixed in.
        let domain_type = match g % 6 {
            _ if os.starts_with("Windows") => "hvm",
            1 => "pvh",
            3 => "pv_in_pvh",
            _ => "hvm",
        };
        let vm = Vm {
            id: Id::new(seed, "VM", n),
            metrics: Id::new(seed, "VM_metrics", n),
            guest_metrics: (running && has_agent).then(|| Id::new(seed, "VM_guest_metrics", n)),
            name,
            description: String::new(),
            kind: VmKind::Guest,
            power: if running {
                Power::Running
            } else {
                Power::Halted
            },
            resident_on: host,
            affinity: host,
            domid,
            vcpus: self.vcpus,
            memory_static_max: mem,
            memory_dynamic_max: mem,
            memory_dynamic_min: mem,
            memory_static_min: mem / 2,
            vifs,
            vbds,
            os,
            tags: guest_tags(g),
            snapshot_of: None,
            snapshot_time: 0,
            start_time,
            install_time: if running {
                start_time - INSTALLED_BEFORE_START
            } else {
                0
            },
            guest_updated: now,
            is_default_template: false,
            domain_type,
            has_agent,
            last_host: host,
            // A few running guests wait for a device-model restart after an update.
            pending_guidances: if running && g % 11 == 5 {
                vec!["restart_device_model".into()]
            } else {
                Vec::new()
            },
            requires_reboot: false,
        };
        self.vms.push(vm);
        self.vms.len() - 1
    }

    /// Adds a VDI and returns its opaque ref.
    fn add_vdi(&mut self, name: &str, sr: usize, size: i64) -> String {
        let n = self.serial();
        let mut rng = SplitMix::for_purpose(self.seed, &format!("vdi/{n}"));
        self.vdis.push(Vdi {
            id: Id::new(self.seed, "VDI", n),
            name: name.to_string(),
            sr,
            virtual_size: size,
            physical_utilisation: size / 100 * rng.range_i64(10, 90),
            is_snapshot: false,
            snapshot_of: None,
            is_iso: false,
        });
        self.vdis[self.vdis.len() - 1].id.opaque_ref.clone()
    }

    /// Adds a snapshot of VM `of` (with snapshot VDIs of its disks); returns its index.
    pub(super) fn add_snapshot(&mut self, of: usize, now: i64) -> usize {
        let n = self.serial();
        let seed = self.seed;
        let src = self.vms[of].clone();
        let mut vbds = Vec::new();
        for (k, vbd) in src.vbds.iter().enumerate() {
            let orig = vbd
                .vdi
                .as_ref()
                .and_then(|r| self.vdis.iter().find(|d| &d.id.opaque_ref == r))
                .cloned();
            let vdi = match orig {
                // A CD's ISO is not snapshotted: the snapshot's drive holds the same one.
                Some(orig) if vbd.is_cd => Some(orig.id.opaque_ref.clone()),
                Some(orig) => {
                    let sn = self.serial();
                    self.vdis.push(Vdi {
                        id: Id::new(seed, "VDI", sn),
                        name: orig.name.clone(),
                        sr: orig.sr,
                        virtual_size: orig.virtual_size,
                        physical_utilisation: orig.physical_utilisation / 10,
                        is_snapshot: true,
                        snapshot_of: Some(orig.id.opaque_ref.clone()),
                        is_iso: false,
                    });
                    Some(self.vdis[self.vdis.len() - 1].id.opaque_ref.clone())
                }
                None => None,
            };
            vbds.push(Vbd {
                id: Id::new(seed, "VBD", n * 4 + k as u64),
                device: vbd.device.clone(),
                userdevice: vbd.userdevice.clone(),
                vdi,
                is_cd: vbd.is_cd,
            });
        }
        let vifs = src
            .vifs
            .iter()
            .enumerate()
            .map(|(k, vif)| Vif {
                id: Id::new(seed, "VIF", n * 4 + k as u64),
                device: vif.device,
                mac: vif.mac.clone(),
                network: vif.network,
            })
            .collect();
        self.vms.push(Vm {
            id: Id::new(seed, "VM", n),
            metrics: Id::new(seed, "VM_metrics", n),
            guest_metrics: None,
            name: format!("{} before upgrade", src.name),
            description: "Snapshot taken before the last upgrade".into(),
            kind: VmKind::Snapshot,
            power: Power::Halted,
            resident_on: None,
            affinity: src.affinity,
            domid: -1,
            vifs,
            vbds,
            snapshot_of: Some(src.id.opaque_ref.clone()),
            snapshot_time: now - 86_400 * 3,
            start_time: 0,
            install_time: 0,
            has_agent: false,
            last_host: None,
            tags: Vec::new(),
            pending_guidances: Vec::new(),
            requires_reboot: false,
            ..src
        });
        self.vms.len() - 1
    }

    pub(super) fn vm_index(&self, uuid: &str) -> Option<usize> {
        self.vms.iter().position(|v| v.id.uuid == uuid)
    }

    /// Renames a VM; returns false when no VM has that UUID.
    pub(super) fn set_vm_name(&mut self, uuid: &str, name: &str) -> bool {
        match self.vm_index(uuid) {
            Some(i) => {
                self.vms[i].name = name.to_string();
                self.generation += 1;
                true
            }
            None => false,
        }
    }

    /// Starts a new guest on host `h` (as if created or migrated in); returns its UUID.
    pub(super) fn start_guest(&mut self, h: usize, now: i64) -> Option<String> {
        let local = self.local_sr(h)?;
        let nfs = self.srs.iter().position(|s| s.sr_type == "nfs")?;
        let iscsi = self.srs.iter().position(|s| s.sr_type == "lvmoiscsi")?;
        let g = self.add_guest(Some(h), now, local, nfs, iscsi);
        self.generation += 1;
        self.rrd_epoch += 1;
        Some(self.vms[g].id.uuid.clone())
    }

    /// Hides an SR from record calls; returns false when no SR has that UUID.
    pub(super) fn hide_sr(&mut self, uuid: &str) -> bool {
        match self.srs.iter_mut().find(|s| s.id.uuid == uuid) {
            Some(sr) => {
                sr.hidden = true;
                self.generation += 1;
                true
            }
            None => false,
        }
    }

    /// VMs with a domain (dom0 included) whose RRDs live on host `h`.
    pub(super) fn resident_running(&self, h: usize) -> impl Iterator<Item = &Vm> {
        self.vms
            .iter()
            .filter(move |v| v.has_domain() && v.resident_on == Some(h))
    }

    /// SRs with an attached PBD on host `h`, in SR order.
    pub(super) fn attached_srs(&self, h: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .pbds
            .iter()
            .filter(|p| p.host == h && p.attached)
            .map(|p| p.sr)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The local (non-shared, `user`) SR of host `h`, if any.
    pub(super) fn local_sr(&self, h: usize) -> Option<usize> {
        self.pbds
            .iter()
            .filter(|p| p.host == h)
            .map(|p| p.sr)
            .find(|&s| !self.srs[s].shared && self.srs[s].content_type == "user")
    }

    pub(super) fn host_of_ref(&self, r: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.id.opaque_ref == r)
    }
}

/// Guest `g`'s tags: none on most, a plain one on every fourth, and on every seventh free
/// text with quotes, a backslash, a newline and non-ASCII, as users do type them.
fn guest_tags(g: usize) -> Vec<String> {
    let mut tags = Vec::new();
    if g.is_multiple_of(4) {
        tags.push("prod".to_string());
    }
    if g % 7 == 3 {
        tags.push("owner=\"ops\"".to_string());
        tags.push("C:\\backup".to_string());
        tags.push("line1\nline2".to_string());
        tags.push("Zürich ☃".to_string());
    }
    tags
}

/// Lifecycle state of host `h` at start: hosts cycle through three patterns so that a
/// pool of three or more shows each (patched since boot or not, licence dates, tags).
fn host_lifecycle(h: usize, host: &mut Host, now: i64) {
    match h % 3 {
        0 => {
            // Patched with yum two days after its boot: Xen Orchestra would say reboot.
            host.rpm_patch_installation_ms = Some((host.boot_time + 2 * 86_400) * 1000 + 250);
            host.license_expiry = Some(32_503_680_000); // 3000-01-01
            host.tags = vec!["rack-A".into(), "role=\"master\"".into()];
        }
        1 => {
            // Patched before its last boot: nothing pending.
            host.rpm_patch_installation_ms = Some((host.boot_time - 86_400) * 1000);
            // A licence that runs out in 40 days, at midnight.
            host.license_expiry = Some((now / 86_400 + 40) * 86_400);
            host.tags = vec![
                "baie \\B2".into(),
                "ligne 1\nligne 2".into(),
                "électrique ⚡".into(),
            ];
        }
        _ => {}
    }
}

/// `bytes` bytes of hex text taken from `hex` (repeated as needed), as `AB:CD:…`.
pub(super) fn colon_hex(hex: &str, bytes: usize) -> String {
    let digits: Vec<char> = hex
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (0..bytes)
        .map(|i| {
            let a = digits[(2 * i) % digits.len()];
            let b = digits[(2 * i + 1) % digits.len()];
            format!("{a}{b}")
        })
        .collect::<Vec<_>>()
        .join(":")
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// A locally administered unicast MAC derived from the seed.
fn mac(seed: u64, tag: &str, n: u64) -> String {
    let x = super::rng::mix(super::rng::hash_str(seed, tag) ^ super::rng::mix(n));
    let b = x.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        (b[0] & 0xFC) | 0x02,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

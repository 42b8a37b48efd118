//! xapi-sim: a simulated XAPI pool for xen-exporter's tests, benchmarks and `--demo`: every
//! host listens on its own loopback address and speaks XAPI's wire formats (JSON-RPC,
//! XML-RPC, `/rrd_updates` in three generations, stunnel-like TLS). A crate of its own that
//! shares no types with the exporter's XAPI client, so that each is checked against the
//! wire-format reference rather than against the other.
//!
//! Layout: `model` holds the pool and `mutate` its runtime changes, `records` turns it into
//! XenAPI records, `events` derives `event.from` from record changes, `rpc` dispatches
//! methods, `rrd` renders `/rrd_updates`, `server` is the HTTP/TLS front, `state` the
//! shared mutable state (sessions, counters, faults).

mod events;
mod model;
mod mutate;
mod numfmt;
mod records;
mod rng;
mod rpc;
mod rrd;
mod server;
mod state;
mod tls;
mod wire;

#[cfg(test)]
mod event_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use state::Shared;
pub use tls::ClientIdentity;

/// How to build a simulated pool.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of hosts; host 0 is the pool master.
    pub hosts: usize,
    /// Running guests per host (the control domain comes on top).
    pub vms_per_host: usize,
    /// Physical CPUs per host.
    pub pcpus: usize,
    /// vCPUs per guest.
    pub vcpus: usize,
    /// Halted guests: resident nowhere, so absent from every `/rrd_updates`.
    pub halted_vms: usize,
    /// Templates (`is_a_template`); one snapshot of the first guest is always added.
    pub templates: usize,
    pub seed: u64,
    pub generation: Generation,
    /// How `/rrd_updates` reads `vm_uuid`, which xapi 26.7 changed; apart from the
    /// [`Generation`], whose version strings stay those of xapi 25.33 for [`Generation::Current`].
    pub vm_uuid_filter: VmUuidFilter,
    /// HTTPS like real XAPI; `false` = plain HTTP.
    pub tls: bool,
    pub clock: Clock,
    /// Fraction of RRD values written as `NaN` (deterministic per value).
    pub nan_ratio: f64,
    /// Names for guests in creation order (running guests host by host, then halted ones);
    /// guests beyond the list get default names such as `web-001`.
    pub vm_names: Vec<String>,
    pub username: String,
    pub password: String,
    /// Idle sessions expire after this long; `None` = never.
    pub session_idle_timeout: Option<Duration>,
    /// `pool.enable_client_certificate_auth`: the master asks for a client certificate and
    /// checks it against these CA certificates (PEM). A connection whose certificate passes
    /// gets a session from `session.login_with_password` whatever the password, with the
    /// `client-cert` role; others go the password way. See [`ClientIdentity`].
    pub client_ca_pem: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            hosts: 2,
            vms_per_host: 3,
            pcpus: 16,
            vcpus: 2,
            halted_vms: 1,
            templates: 3,
            seed: 1,
            generation: Generation::Current,
            vm_uuid_filter: VmUuidFilter::Single,
            tls: true,
            clock: Clock::Real { skew_secs: 0 },
            nan_ratio: 0.02,
            vm_names: Vec::new(),
            username: "root".into(),
            password: "xen-sim-password".into(),
            session_idle_timeout: None,
            client_ca_pem: None,
        }
    }
}

impl SimConfig {
    /// A pool that looks good in a demo: 3 hosts × 6 named guests.
    pub fn demo() -> Self {
        let names = [
            "web-frontend-01",
            "web-frontend-02",
            "api-gateway",
            "postgres-primary",
            "postgres-replica",
            "redis-cache",
            "build-runner-01",
            "build-runner-02",
            "grafana",
            "prometheus",
            "mail-relay",
            "dns-01",
            "dns-02",
            "backup-proxy",
            "ldap",
            "vpn-gateway",
            "file-server",
            "monitoring-agent",
            "staging-app",
        ];
        SimConfig {
            hosts: 3,
            vms_per_host: 6,
            pcpus: 16,
            vcpus: 2,
            halted_vms: 1,
            templates: 3,
            seed: 2026,
            vm_names: names.iter().map(|s| (*s).to_string()).collect(),
            ..SimConfig::default()
        }
    }
}

/// Which xapi generation the pool imitates; mainly changes `/rrd_updates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Generation {
    /// xapi 1.249 (XCP-ng 8.2): JSON format A (unquoted keys, bare numbers), `%0.4f`,
    /// `Accept` ignored, JSON replies without Content-Type.
    Legacy,
    /// xapi ~23.31–24.10: format B (`data` inside `meta`, numbers as strings), `%0.5g`.
    Nested,
    /// xapi ≥ 25.3 (XCP-ng 8.3): format C, `%0.15g`.
    #[default]
    Current,
}

/// How `/rrd_updates` reads its `vm_uuid` query parameter (xcp-rrdd's
/// rrdd_http_handler.ml `get_rrd_updates_handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmUuidFilter {
    /// xapi < 26.7: the first value only; absent or `all` selects every resident VM, `none`
    /// or any value that is no resident VM's UUID selects none.
    #[default]
    Single,
    /// xapi ≥ 26.7 (commit 1acecd6cf6): repeatable, every value a literal UUID; absent
    /// selects every resident VM, and `all` or an unknown UUID selects none.
    Literal,
}

/// The pool's clock (hosts share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// System time plus a skew in seconds (positive = the pool runs ahead).
    Real { skew_secs: i64 },
    /// Always this epoch second.
    Frozen(i64),
}

/// A failure injected on every request to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostFault {
    #[default]
    None,
    /// Accept the TCP connection, then close it at once.
    Refuse,
    /// Accept, never answer, until the fault is lifted (set to anything else): then what was
    /// held is closed unanswered, as a host that recovers drops its old connections. Lets a
    /// test hold a request in flight for exactly as long as it needs, rather than for a time.
    Hang,
    /// Answer each request once the fault is lifted (set to anything else), as a slow host
    /// that does answer in the end: holds a collection in flight for as long as a test needs.
    Hold,
    /// Answer each request after this delay.
    Delay(Duration),
    /// `/rrd_updates` answers HTTP 500 (RPC is unaffected).
    Http500,
}

/// Plain-data snapshot of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    pub pool_uuid: String,
    pub pool_name: String,
    /// Host index of the pool master.
    pub master: usize,
    pub ha_enabled: bool,
    /// UUID of `pool.default_SR`.
    pub default_sr: String,
    pub hosts: Vec<HostView>,
    pub vms: Vec<VmView>,
    /// Every SR, including one hidden with [`Sim::hide_sr`].
    pub srs: Vec<SrView>,
    pub pbds: Vec<PbdView>,
    pub ha_host_failures_to_tolerate: i64,
    pub ha_plan_exists_for: i64,
    pub ha_overcommitted: bool,
    /// Every VDI (ISOs, disks, snapshot VDIs).
    pub vdis: Vec<VdiView>,
    /// Every message, oldest first.
    pub messages: Vec<MessageView>,
    /// Every `Certificate` record.
    pub certificates: Vec<CertificateView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub uuid: String,
    pub name: String,
    pub address: String,
    /// `host.enabled` (false = maintenance mode).
    pub enabled: bool,
    /// `host_metrics.live`.
    pub live: bool,
    /// `host_metrics.memory_total`, bytes.
    pub memory_total: i64,
    /// `host.cpu_info["cpu_count"]` (also the number of `host_CPUs`).
    pub cpu_count: usize,
    /// `host.cpu_info["modelname"]`.
    pub cpu_model: String,
    /// `host.software_version["product_version"]`, which depends on the [`Generation`].
    pub product_version: String,
    /// `host.software_version["xen"]`.
    pub xen_version: String,
    /// `host.multipathing` (and `other_config["multipathing"]`).
    pub multipathing: bool,
    pub tags: Vec<String>,
    /// `other_config["boot_time"]`, epoch seconds (written `"<secs>."`).
    pub boot_time: i64,
    /// `other_config["rpm_patch_installation_time"]` in milliseconds; `None` = absent.
    pub rpm_patch_installation_ms: Option<i64>,
    /// That key's text exactly as served.
    pub rpm_patch_installation_time: Option<String>,
    /// `license_params["expiry"]`, epoch seconds; `None` = `never`.
    pub license_expiry: Option<i64>,
    /// `pending_guidances` (absent from the record on [`Generation::Legacy`]).
    pub pending_guidances: Vec<String>,
    /// `updates_requiring_reboot` (refs; empty in the simulator's pools).
    pub updates_requiring_reboot: Vec<String>,
    /// `not_after` of the host's `Certificate` record of type `host` (the one installed
    /// record on Legacy); `None` when it has none, and then clients read
    /// `host.get_server_certificate`, valid until [`Sim::server_certificate_not_after`].
    pub certificate_not_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmView {
    pub uuid: String,
    pub name: String,
    /// Host index.
    pub resident_on: Option<usize>,
    /// `Running`, `Halted`, `Paused` or `Suspended`.
    pub power_state: String,
    pub is_control_domain: bool,
    pub is_a_template: bool,
    pub is_a_snapshot: bool,
    /// `VCPUs_max` = `VCPUs_at_startup` (and `VM_metrics.VCPUs_number` while it has a
    /// domain).
    pub vcpus: usize,
    pub memory_static_max: i64,
    pub memory_static_min: i64,
    /// Also `VM_metrics.memory_actual` while it has a domain.
    pub memory_dynamic_max: i64,
    pub memory_dynamic_min: i64,
    /// `VM_metrics.start_time`, epoch seconds (0 = never started).
    pub start_time: i64,
    /// `hvm`, `pv`, `pvh` or `pv_in_pvh`.
    pub domain_type: String,
    /// `VM_guest_metrics.os_version["name"]`; `None` without guest metrics (no agent, or
    /// no domain).
    pub os_name: Option<String>,
    /// `VM_guest_metrics.os_version["distro"]`, with guest metrics only.
    pub os_distro: Option<String>,
    /// `VM_guest_metrics.PV_drivers_version` (major, minor, micro, build), with guest
    /// metrics only.
    pub pv_drivers_version: Option<(String, String, String, String)>,
    pub tags: Vec<String>,
    /// `pending_guidances` (absent from the record on [`Generation::Legacy`]).
    pub pending_guidances: Vec<String>,
    pub requires_reboot: bool,
    /// UUID of the VM a snapshot is of.
    pub snapshot_of: Option<String>,
    /// `snapshot_time`, epoch seconds (0 for non-snapshots).
    pub snapshot_time: i64,
    /// UUIDs of this VM's snapshots (`VM.snapshots`).
    pub snapshots: Vec<String>,
    /// Its VBDs in order.
    pub disks: Vec<DiskView>,
}

/// One VBD of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    pub vbd_uuid: String,
    /// `Disk` or `CD`.
    pub vbd_type: String,
    /// `device` as served: `xvda`… while the VM has a domain, else empty.
    pub device: String,
    pub userdevice: String,
    /// `None` = empty CD drive (`VDI` = `OpaqueRef:NULL`).
    pub vdi_uuid: Option<String>,
    pub currently_attached: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiView {
    pub uuid: String,
    pub name: String,
    pub sr_uuid: String,
    pub virtual_size: i64,
    pub physical_utilisation: i64,
    pub is_a_snapshot: bool,
    /// UUID of the VDI a snapshot VDI is of.
    pub snapshot_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub uuid: String,
    pub opaque_ref: String,
    pub name: String,
    pub priority: i64,
    pub cls: String,
    pub obj_uuid: String,
    /// Epoch seconds.
    pub timestamp: i64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateView {
    pub uuid: String,
    pub opaque_ref: String,
    /// `type`: `ca`, `host` or `host_internal` (not served on [`Generation::Legacy`],
    /// whose records are all host certificates: `host`).
    pub cert_type: String,
    /// `name` (only `ca` certificates have one; not served on Legacy).
    pub name: String,
    /// Host index; `None` = `OpaqueRef:NULL`.
    pub host: Option<usize>,
    pub not_before: i64,
    pub not_after: i64,
    /// `AB:CD:…`, also in `fingerprint`.
    pub fingerprint_sha256: String,
    pub fingerprint_sha1: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrView {
    pub uuid: String,
    pub name: String,
    pub sr_type: String,
    pub content_type: String,
    pub physical_size: i64,
    pub physical_utilisation: i64,
    pub virtual_allocation: i64,
    pub shared: bool,
    /// Length of `SR.VDIs`.
    pub vdis: usize,
    pub sm_config: Vec<(String, String)>,
    pub tags: Vec<String>,
}

/// One PBD. Initially: the NFS SR's carry `server`, `serverpath`, `nfsversion`; the iSCSI
/// SR's (`lvmoiscsi`) carry `target`, `targetIQN`, `port`, `SCSIid`, `multihomelist`,
/// `chapuser`, `chappassword_secret` (a Secret's UUID, never a password) and in
/// `other_config` `mpath-<SCSIid>` = `"[2, 2]"`, `multipathed`, `iscsi_sessions`; the FC
/// SR's (`lvmohba`) carry `SCSIid` and `mpath-<SCSIid>` = `"[4, 4]"`, `multipathed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbdView {
    pub uuid: String,
    pub sr_uuid: String,
    /// Host index.
    pub host: usize,
    /// `currently_attached`.
    pub attached: bool,
    pub device_config: Vec<(String, String)>,
    pub other_config: Vec<(String, String)>,
}

/// What clients did to the simulator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful `session.login_with_password` calls.
    pub logins: u64,
    /// Of those, logins on a connection authenticated by a client certificate (the
    /// password was not checked).
    pub client_cert_logins: u64,
    pub failed_logins: u64,
    pub logouts: u64,
    /// Originator of each successful login, in order.
    pub originators: Vec<String>,
    /// Every RPC method called (any host), including `session.*` and failed calls.
    pub rpc: BTreeMap<String, u64>,
    /// Per host: every `GET /rrd_updates`, errors included.
    pub rrd_updates: Vec<u64>,
    /// Per host: bytes of the `/rrd_updates` bodies answered 200.
    pub rrd_bytes: Vec<u64>,
    /// `/rrd_updates` requests answered 401.
    pub rrd_unauthorised: u64,
    /// `/rrd_updates` requests authenticated with Basic auth (each costs xapi two internal
    /// logins; those sessions live only during the request and are not in `logins`).
    pub rrd_basic_auth: u64,
    /// Query strings of the last 64 `/rrd_updates` requests, `session_id` value replaced by
    /// `<session>`.
    pub rrd_queries: Vec<String>,
}

/// The newest row of a served `/rrd_updates` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRow {
    pub t: i64,
    /// (legend entry, value text exactly as written on the wire).
    pub values: Vec<(String, String)>,
}

/// A running simulated pool. Cheap to clone; the listeners stop at [`Sim::shutdown`] or when
/// the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Sim {
    /// Binds every host, builds certificates and the model, and starts serving.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        if config.hosts == 0 || config.hosts > 254 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a simulated pool has 1 to 254 hosts",
            ));
        }
        let (listeners, addresses, port) = server::bind_all(config.hosts).await?;
        let tls = if config.tls {
            Some(
                tls::build(&addresses, config.client_ca_pem.as_deref())
                    .map_err(std::io::Error::other)?,
            )
        } else {
            None
        };
        let shared = Arc::new(Shared::new(config, addresses, port, tls));
        let (tx, rx) = watch::channel(false);
        let tasks = listeners
            .into_iter()
            .enumerate()
            .map(|(h, l)| tokio::spawn(server::serve_host(Arc::clone(&shared), h, l, rx.clone())))
            .collect();
        Ok(Sim {
            inner: Arc::new(Inner {
                shared,
                shutdown: tx,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `https://127.A.B.1:PORT` (`http://` without TLS).
    /// URL of the current pool master (host 0 until [`Sim::set_master`]).
    pub fn master_url(&self) -> String {
        self.host_url(self.shared().master())
    }

    pub fn host_url(&self, host: usize) -> String {
        let scheme = if self.shared().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}", self.host_address(host), self.port())
    }

    /// The IP in `host.address`, e.g. `127.A.B.2` for host 1. Panics on a bad index.
    pub fn host_address(&self, host: usize) -> String {
        self.shared().addresses[host].to_string()
    }

    /// The port every host listens on.
    pub fn port(&self) -> u16 {
        self.shared().port
    }

    /// PEM of the CA that signed every host certificate (empty without TLS).
    pub fn ca_pem(&self) -> String {
        self.shared()
            .tls
            .as_ref()
            .map(|t| t.ca_pem.clone())
            .unwrap_or_default()
    }

    /// DER of the CA certificate (empty without TLS).
    pub fn ca_der(&self) -> Vec<u8> {
        self.shared()
            .tls
            .as_ref()
            .map(|t| t.ca_der.clone())
            .unwrap_or_default()
    }

    /// DER of host `host`'s leaf certificate (empty without TLS).
    pub fn host_cert_der(&self, host: usize) -> Vec<u8> {
        self.shared()
            .tls
            .as_ref()
            .and_then(|t| t.host_ders.get(host).cloned())
            .unwrap_or_default()
    }

    /// Host `host`'s certificate exactly as `host.get_server_certificate` returns it (empty
    /// without TLS).
    pub fn host_cert_pem(&self, host: usize) -> String {
        self.shared()
            .tls
            .as_ref()
            .and_then(|t| t.host_pems.get(host).cloned())
            .unwrap_or_default()
    }

    /// While `on`, host `host` presents a self-signed certificate of its own making instead
    /// of its real one, as a man in the middle would; XAPI keeps reporting the real one.
    /// Affects new connections only.
    pub fn impersonate_host(&self, host: usize, on: bool) {
        if let Some(flag) = self.shared().lock().impostors.get_mut(host) {
            *flag = on;
        }
    }

    /// SHA-256 fingerprint of a host certificate in XAPI's `AB:CD:…` form.
    pub fn host_cert_fingerprint(&self, host: usize) -> String {
        self.shared()
            .tls
            .as_ref()
            .and_then(|t| t.fingerprints.get(host).cloned())
            .unwrap_or_default()
    }

    pub fn username(&self) -> &str {
        &self.shared().config.username
    }

    pub fn password(&self) -> &str {
        &self.shared().config.password
    }

    /// The pool clock now (epoch seconds).
    pub fn now(&self) -> i64 {
        self.shared().now()
    }

    pub fn view(&self) -> PoolView {
        let st = self.shared().lock();
        let m = &st.model;
        let sv = records::software_version(self.shared().config.generation);
        let vdi_uuid: std::collections::HashMap<&str, &str> = m
            .vdis
            .iter()
            .map(|d| (d.id.opaque_ref.as_str(), d.id.uuid.as_str()))
            .collect();
        PoolView {
            pool_uuid: m.pool.id.uuid.clone(),
            pool_name: m.pool.name.clone(),
            master: m.pool.master,
            ha_enabled: m.pool.ha_enabled,
            default_sr: m.srs[m.pool.default_sr].id.uuid.clone(),
            hosts: m
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| HostView {
                    uuid: h.id.uuid.clone(),
                    name: h.name.clone(),
                    address: h.address.clone(),
                    enabled: h.enabled,
                    live: h.live,
                    memory_total: h.memory_total,
                    cpu_count: h.pcpus,
                    cpu_model: records::CPU_MODEL.to_string(),
                    product_version: sv.product.to_string(),
                    xen_version: sv.xen.to_string(),
                    multipathing: h.multipathing,
                    tags: h.tags.clone(),
                    boot_time: h.boot_time,
                    rpm_patch_installation_ms: h.rpm_patch_installation_ms,
                    rpm_patch_installation_time: h
                        .rpm_patch_installation_ms
                        .map(records::js_seconds),
                    license_expiry: h.license_expiry,
                    pending_guidances: h.pending_guidances.clone(),
                    updates_requiring_reboot: h.updates_requiring_reboot.clone(),
                    certificate_not_after: m
                        .certificates
                        .iter()
                        .find(|c| c.host == Some(i) && c.kind == model::CertKind::Host)
                        .map(|c| c.not_after),
                })
                .collect(),
            vms: m
                .vms
                .iter()
                .map(|v| VmView {
                    uuid: v.id.uuid.clone(),
                    name: v.name.clone(),
                    resident_on: v.resident_on,
                    power_state: v.power.as_str().to_string(),
                    is_control_domain: v.is_control_domain(),
                    is_a_template: v.is_template(),
                    is_a_snapshot: v.is_snapshot(),
                    vcpus: v.vcpus,
                    memory_static_max: v.memory_static_max,
                    memory_static_min: v.memory_static_min,
                    memory_dynamic_max: v.memory_dynamic_max,
                    memory_dynamic_min: v.memory_dynamic_min,
                    start_time: v.start_time,
                    domain_type: v.domain_type.to_string(),
                    os_name: v
                        .guest_metrics
                        .as_ref()
                        .map(|_| records::os_version(&v.os).name.to_string()),
                    os_distro: v
                        .guest_metrics
                        .as_ref()
                        .map(|_| records::os_version(&v.os).distro.to_string()),
                    pv_drivers_version: v.guest_metrics.as_ref().map(|_| {
                        let p = records::pv_drivers_version(&v.os);
                        (
                            p.major.to_string(),
                            p.minor.to_string(),
                            p.micro.to_string(),
                            p.build.to_string(),
                        )
                    }),
                    tags: v.tags.clone(),
                    pending_guidances: v.pending_guidances.clone(),
                    requires_reboot: v.requires_reboot,
                    snapshot_of: v
                        .snapshot_of
                        .as_ref()
                        .and_then(|r| m.vms.iter().find(|o| &o.id.opaque_ref == r))
                        .map(|o| o.id.uuid.clone()),
                    snapshot_time: v.snapshot_time,
                    snapshots: m
                        .vms
                        .iter()
                        .filter(|s| s.snapshot_of.as_ref() == Some(&v.id.opaque_ref))
                        .map(|s| s.id.uuid.clone())
                        .collect(),
                    disks: v
                        .vbds
                        .iter()
                        .map(|b| DiskView {
                            vbd_uuid: b.id.uuid.clone(),
                            vbd_type: if b.is_cd { "CD" } else { "Disk" }.to_string(),
                            device: if v.has_domain() {
                                b.device.clone()
                            } else {
                                String::new()
                            },
                            userdevice: b.userdevice.clone(),
                            vdi_uuid: b
                                .vdi
                                .as_ref()
                                .and_then(|r| vdi_uuid.get(r.as_str()))
                                .map(|u| (*u).to_string()),
                            currently_attached: v.has_domain(),
                        })
                        .collect(),
                })
                .collect(),
            srs: m
                .srs
                .iter()
                .enumerate()
                .map(|(i, s)| SrView {
                    uuid: s.id.uuid.clone(),
                    name: s.name.clone(),
                    sr_type: s.sr_type.clone(),
                    content_type: s.content_type.clone(),
                    physical_size: s.physical_size,
                    physical_utilisation: s.physical_utilisation,
                    virtual_allocation: s.virtual_allocation,
                    shared: s.shared,
                    vdis: m.vdis.iter().filter(|d| d.sr == i).count(),
                    sm_config: s.sm_config.clone(),
                    tags: s.tags.clone(),
                })
                .collect(),
            pbds: m
                .pbds
                .iter()
                .map(|p| PbdView {
                    uuid: p.id.uuid.clone(),
                    sr_uuid: m.srs[p.sr].id.uuid.clone(),
                    host: p.host,
                    attached: p.attached,
                    device_config: p.device_config.clone(),
                    other_config: p.other_config.clone(),
                })
                .collect(),
            ha_host_failures_to_tolerate: m.pool.ha_host_failures_to_tolerate,
            ha_plan_exists_for: m.pool.ha_plan_exists_for,
            ha_overcommitted: m.pool.ha_overcommitted,
            vdis: m
                .vdis
                .iter()
                .map(|d| VdiView {
                    uuid: d.id.uuid.clone(),
                    name: d.name.clone(),
                    sr_uuid: m.srs[d.sr].id.uuid.clone(),
                    virtual_size: d.virtual_size,
                    physical_utilisation: d.physical_utilisation,
                    is_a_snapshot: d.is_snapshot,
                    snapshot_of: d
                        .snapshot_of
                        .as_ref()
                        .and_then(|r| vdi_uuid.get(r.as_str()))
                        .map(|u| (*u).to_string()),
                })
                .collect(),
            messages: m
                .messages
                .iter()
                .map(|x| MessageView {
                    uuid: x.id.uuid.clone(),
                    opaque_ref: x.id.opaque_ref.clone(),
                    name: x.name.clone(),
                    priority: x.priority,
                    cls: x.cls.clone(),
                    obj_uuid: x.obj_uuid.clone(),
                    timestamp: x.timestamp,
                    body: x.body.clone(),
                })
                .collect(),
            certificates: m
                .certificates
                .iter()
                .map(|c| CertificateView {
                    uuid: c.id.uuid.clone(),
                    opaque_ref: c.id.opaque_ref.clone(),
                    cert_type: c.kind.as_str().to_string(),
                    name: c.name.clone(),
                    host: c.host,
                    not_before: c.not_before,
                    not_after: c.not_after,
                    fingerprint_sha256: c.sha256.clone(),
                    fingerprint_sha1: c.sha1.clone(),
                })
                .collect(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.shared().lock().counters.clone()
    }

    pub fn reset_counters(&self) {
        let mut st = self.shared().lock();
        let hosts = st.counters.rrd_updates.len();
        st.counters = Counters {
            rrd_updates: vec![0; hosts],
            rrd_bytes: vec![0; hosts],
            ..Counters::default()
        };
    }

    /// Destroys every session, as a toolstack restart does; blocked `event.from` calls of
    /// those sessions return `SESSION_INVALID` at once.
    pub fn invalidate_sessions(&self) {
        self.shared().lock().sessions.clear();
        self.shared().wake();
    }

    /// Number of live sessions (what the master's `pool_session_count` reports).
    pub fn session_count(&self) -> usize {
        let idle = self.shared().config.session_idle_timeout;
        self.shared().lock().live_sessions(idle)
    }

    pub fn set_host_fault(&self, host: usize, fault: HostFault) {
        {
            let mut st = self.shared().lock();
            if let Some(f) = st.faults.get_mut(host) {
                *f = fault;
            }
        }
        // After the lock is released: held connections look at their host's fault again.
        self.shared().fault_changed();
    }

    /// Renames the VM with that UUID (no effect if there is none).
    pub fn set_vm_name(&self, vm_uuid: &str, name: &str) {
        self.shared().mutate(|m, _| m.set_vm_name(vm_uuid, name));
    }

    /// Starts a new running guest on `host`, as if created or migrated in after the exporter
    /// read the inventory; returns its UUID (`None` if the host has no local SR).
    pub fn start_vm(&self, host: usize) -> Option<String> {
        self.shared().mutate(|m, now| m.start_guest(host, now))
    }

    /// Hides an SR from `SR.get_all_records` while the hosts keep reporting its I/O data
    /// sources (a forgotten SR with live tapdisks); returns false for an unknown UUID.
    /// `event.from` reports it deleted.
    pub fn hide_sr(&self, sr_uuid: &str) -> bool {
        self.shared().mutate(|m, _| m.hide_sr(sr_uuid))
    }

    /// Sets `PBD.currently_attached` of `host`'s PBD of that SR (which also decides whether
    /// the host reports the SR's I/O data sources); false if there is no such PBD.
    pub fn set_pbd_attached(&self, sr_uuid: &str, host: usize, attached: bool) -> bool {
        self.shared()
            .mutate(|m, _| m.set_pbd_attached(sr_uuid, host, attached))
    }

    /// Sets `other_config["mpath-<SCSIid>"] = "[active, max]"` on `host`'s PBD of that SR,
    /// with the SCSIid of the PBD's `device_config`; false if there is no such PBD or it
    /// has no SCSIid (NFS, local SRs).
    pub fn set_multipath_paths(&self, sr_uuid: &str, host: usize, active: u32, max: u32) -> bool {
        self.shared()
            .mutate(|m, _| m.set_multipath_paths(sr_uuid, host, active, max))
    }

    /// Destroys a VM with its metrics, guest metrics, VIFs and VBDs (its VDIs stay); its
    /// RRD leaves its host's `/rrd_updates`. False for unknown UUIDs and control domains.
    pub fn remove_vm(&self, vm_uuid: &str) -> bool {
        self.shared().mutate(|m, _| m.remove_vm(vm_uuid))
    }

    /// Live-migrates a running or paused VM to `host`: `resident_on` and its RRD move. False
    /// for unknown UUIDs or hosts, control domains and VMs without a domain.
    pub fn migrate_vm(&self, vm_uuid: &str, host: usize) -> bool {
        self.shared().mutate(|m, _| m.migrate_vm(vm_uuid, host))
    }

    /// Sets a guest's power state: `Running`, `Halted`, `Paused` or `Suspended`. Halted and
    /// Suspended drop residency, RRD and guest metrics; Paused keeps them; Running (or
    /// Paused) from no domain starts it on its affinity host, else where it last ran, else
    /// the master, with a new domid and start time. False for unknown states or UUIDs,
    /// templates, snapshots and control domains.
    pub fn set_vm_power_state(&self, vm_uuid: &str, state: &str) -> bool {
        let Some(power) = model::Power::parse(state) else {
            return false;
        };
        self.shared()
            .mutate(|m, now| m.set_power_state(vm_uuid, power, now))
    }

    /// Makes `host` the pool master, as `pool.designate_new_master` or an emergency
    /// transition does: the old master answers `HOST_IS_SLAVE` from now on, the pool record
    /// names the new one, and every session is gone (xapi restarts on both). No effect on a
    /// bad index.
    pub fn set_master(&self, host: usize) {
        let shared = self.shared();
        shared.mutate(|m, _| m.set_master(host));
        shared.lock().sessions.clear();
    }

    /// Sets `host.enabled` (false = maintenance mode); no effect on a bad index.
    pub fn set_host_enabled(&self, host: usize, enabled: bool) {
        self.shared()
            .mutate(|m, _| m.set_host_enabled(host, enabled));
    }

    /// Sets `host_metrics.live`; no effect on a bad index.
    pub fn set_host_live(&self, host: usize, live: bool) {
        self.shared()
            .mutate(|m, now| m.set_host_live(host, live, now));
    }

    /// Renames host `host` (`name_label`); no effect on a bad index.
    pub fn set_host_name(&self, host: usize, name: &str) {
        self.shared().mutate(|m, _| m.set_host_name(host, name));
    }

    /// Adds a data source to host `host`'s RRD, as a newly installed plugin would, declaring
    /// `units` (what `host.get_data_sources` reports); its values are between 0 and 100.
    /// False for a bad index or a name the host already has.
    pub fn add_host_data_source(&self, host: usize, name: &str, units: &str) -> bool {
        self.shared()
            .mutate(|m, _| m.add_host_data_source(host, name, units))
    }

    /// Sets `host.multipathing` and its mirror `other_config["multipathing"]`; no effect on
    /// a bad index.
    pub fn set_host_multipathing(&self, host: usize, on: bool) {
        self.shared()
            .mutate(|m, _| m.set_host_multipathing(host, on));
    }

    /// Creates a `message` (any name, even one outside `[A-Z0-9_]`; priority 1 = most
    /// severe … 5; `cls` one of `VM`, `Host`, `SR`, `Pool`, `VMPP`, `VMSS`, `PVS_proxy`,
    /// `VDI`, `Certificate`) stamped with the pool clock; returns its UUID. `event.from`
    /// subscribed to `message` reports it as `add`.
    pub fn create_message(
        &self,
        name: &str,
        priority: i64,
        cls: &str,
        obj_uuid: &str,
        body: &str,
    ) -> String {
        let shared = self.shared();
        let uuid =
            shared.mutate(|m, now| m.create_message(name, priority, cls, obj_uuid, body, now));
        // Messages are not in the database: nothing the record diff sees moved.
        shared.wake();
        uuid
    }

    /// Destroys a message (`event.from` reports `del` while the deletion is in xapi's ring
    /// of the last 512–1024); false for an unknown UUID.
    pub fn destroy_message(&self, message_uuid: &str) -> bool {
        let shared = self.shared();
        let done = shared.mutate(|m, _| m.destroy_message(message_uuid));
        shared.wake();
        done
    }

    /// Replaces the `tags` of the VM, host or SR with that UUID; false if none has it.
    pub fn set_tags(&self, uuid: &str, tags: &[&str]) -> bool {
        self.shared().mutate(|m, _| m.set_tags(uuid, tags))
    }

    /// Sets a VDI's `virtual_size` and `physical_utilisation` (bytes); false for an
    /// unknown UUID.
    pub fn resize_vdi(&self, vdi_uuid: &str, virtual_size: i64, physical_utilisation: i64) -> bool {
        self.shared()
            .mutate(|m, _| m.resize_vdi(vdi_uuid, virtual_size, physical_utilisation))
    }

    /// Renews `host`'s server certificate record (type `host`; on [`Generation::Legacy`]
    /// the one installed record): a new record (new ref and UUID, `not_before` = now)
    /// replaces the old, so `event.from` reports `del` + `add`. The certificate the host
    /// serves over TLS does not change. False if the host has no such record.
    pub fn renew_certificate(&self, host: usize, not_after: i64) -> bool {
        self.shared()
            .mutate(|m, now| m.renew_certificate(host, not_after, now))
    }

    /// Sets `pending_guidances` of the host or VM with that UUID (`reboot_host`,
    /// `restart_toolstack`, `restart_device_model`, `restart_vm`, …; empty clears). The
    /// field is absent on [`Generation::Legacy`]. False for an unknown UUID.
    pub fn set_pending_guidances(&self, uuid: &str, guidances: &[&str]) -> bool {
        self.shared()
            .mutate(|m, _| m.set_pending_guidances(uuid, guidances))
    }

    /// Sets `VM.requires_reboot`; false for an unknown UUID.
    pub fn set_vm_requires_reboot(&self, vm_uuid: &str, on: bool) -> bool {
        self.shared()
            .mutate(|m, _| m.set_vm_requires_reboot(vm_uuid, on))
    }

    /// Sets (`Some`, milliseconds since the epoch) or removes `host`'s
    /// `other_config["rpm_patch_installation_time"]`, written as Xen Orchestra does
    /// (`String(ms / 1000)`: `"1712345678.25"`, `"1712345678"`); false on a bad index.
    pub fn set_rpm_patch_installation_time(&self, host: usize, millis: Option<i64>) -> bool {
        self.shared()
            .mutate(|m, _| m.set_rpm_patch_time(host, millis))
    }

    /// Sets `host`'s `other_config["boot_time"]` (epoch seconds, written `"1712345678."`);
    /// false on a bad index.
    pub fn set_host_boot_time(&self, host: usize, epoch: i64) -> bool {
        self.shared().mutate(|m, _| m.set_boot_time(host, epoch))
    }

    /// Sets `host`'s `license_params["expiry"]` (epoch seconds; `None` = `never`); false
    /// on a bad index.
    pub fn set_license_expiry(&self, host: usize, expiry: Option<i64>) -> bool {
        self.shared()
            .mutate(|m, _| m.set_license_expiry(host, expiry))
    }

    /// Snapshots a guest now: a halted `is_a_snapshot` VM named `name` with snapshot VDIs
    /// of its disks, listed in the guest's `snapshots`; returns its UUID (`None` for
    /// unknown UUIDs, templates, snapshots and control domains).
    pub fn snapshot_vm(&self, vm_uuid: &str, name: &str) -> Option<String> {
        self.shared()
            .mutate(|m, now| m.snapshot_vm(vm_uuid, name, now))
    }

    /// Deletes a snapshot with its VBDs, VIFs and snapshot VDIs; false if that UUID is not
    /// a snapshot.
    pub fn remove_snapshot(&self, snapshot_uuid: &str) -> bool {
        self.shared()
            .mutate(|m, _| m.remove_snapshot(snapshot_uuid))
    }

    /// Sets the pool's `ha_enabled`, `ha_host_failures_to_tolerate`,
    /// `ha_plan_exists_for` and `ha_overcommitted`.
    pub fn set_pool_ha(
        &self,
        enabled: bool,
        failures_to_tolerate: i64,
        plan_exists_for: i64,
        overcommitted: bool,
    ) {
        self.shared().mutate(|m, _| {
            m.set_pool_ha(
                enabled,
                failures_to_tolerate,
                plan_exists_for,
                overcommitted,
            )
        });
    }

    /// notAfter (epoch seconds) of the certificate `host.get_server_certificate` returns
    /// for any host: 2035-01-01T00:00:00Z (`None` without TLS).
    pub fn server_certificate_not_after(&self) -> Option<i64> {
        self.shared().tls.as_ref().map(|_| tls::VALIDITY.1)
    }

    /// The next `event.from` call (any session) fails once with `EVENTS_LOST`.
    pub fn lose_events(&self) {
        self.shared().lock().events.lose_next = true;
    }

    /// Every `event.from` call blocked now loses its connection without an HTTP response,
    /// as with a network cut or a restarted xapi; later calls work normally.
    pub fn drop_event_streams(&self) {
        self.shared().cut_event_streams();
    }

    /// Newest row (largest t) of the last successful `/rrd_updates` reply of that host;
    /// `None` before any, or if that reply had no rows.
    pub fn last_rrd(&self, host: usize) -> Option<ServedRow> {
        let row = self.shared().lock().last_rrd.get(host).cloned().flatten()?;
        let mut values = Vec::with_capacity(row.ends.len());
        let mut col = 0usize;
        let mut start = 0usize;
        for (owner, cf) in &row.columns {
            for i in 0..owner.len() {
                let end = row.ends.get(col).map_or(start, |e| *e as usize);
                values.push((
                    owner.legend_entry(*cf, i),
                    row.texts[start..end].to_string(),
                ));
                start = end;
                col += 1;
            }
        }
        Some(ServedRow { t: row.t, values })
    }

    /// Stops the listeners and every connection task.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

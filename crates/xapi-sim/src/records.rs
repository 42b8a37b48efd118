//! XenAPI object records built from the model: the payloads of `<class>.get_all_records`,
//! `get_all` and `get_record`, with the field set and types of a real XCP-ng pool.

use std::collections::HashMap;

use super::Generation;
use super::model::{
    Certificate, Host, Message, Model, NULL_REF, Pif, Power, Vm, VmKind, refs_where,
};
use super::wire::V;

/// What records need besides the model. Deliberately not the clock: records are a pure
/// function of the model, so `event.from` can diff them to find what changed.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordCtx {
    pub(super) generation: Generation,
}

/// Classes served by `get_all_records`, `get_all` and `get_record`.
pub(super) const CLASSES: &[&str] = &[
    "pool",
    "host",
    "host_metrics",
    "host_cpu",
    "VM",
    "VM_metrics",
    "VM_guest_metrics",
    "SR",
    "PBD",
    "PIF",
    "PIF_metrics",
    "VDI",
    "VBD",
    "VIF",
    "network",
    "Certificate",
];

/// Served like [`CLASSES`] but kept outside xapi's database: not in `valid_ref_counts`,
/// with events of their own kind.
pub(super) const MESSAGE: &str = "message";

/// Whether `<class>.get_all_records` and friends exist.
pub(super) fn is_served(class: &str) -> bool {
    class == MESSAGE || CLASSES.contains(&class)
}

/// All records of `class` as (opaque ref, record), or `None` for an unknown class.
pub(super) fn records(model: &Model, class: &str, ctx: RecordCtx) -> Option<Vec<(String, V)>> {
    let out = match class {
        "pool" => vec![(model.pool.id.opaque_ref.clone(), pool(model))],
        "host" => model
            .hosts
            .iter()
            .enumerate()
            .map(|(h, host)| (host.id.opaque_ref.clone(), host_record(model, h, host, ctx)))
            .collect(),
        "host_metrics" => model
            .hosts
            .iter()
            .map(|host| (host.metrics.opaque_ref.clone(), host_metrics(host)))
            .collect(),
        "host_cpu" => model
            .hosts
            .iter()
            .flat_map(|host| host.cpus.iter().enumerate().map(move |(n, c)| (host, n, c)))
            .map(|(host, n, c)| (c.opaque_ref.clone(), host_cpu(host, n, &c.uuid)))
            .collect(),
        "VM" => {
            let snapshots = by_key(model.vms.iter().filter_map(|v| {
                v.snapshot_of
                    .as_deref()
                    .map(|of| (of, v.id.opaque_ref.clone()))
            }));
            model
                .vms
                .iter()
                .map(|vm| {
                    let snaps = snapshots.get(vm.id.opaque_ref.as_str());
                    let rec = vm_record(model, vm, snaps.map_or(&[][..], Vec::as_slice), ctx);
                    (vm.id.opaque_ref.clone(), rec)
                })
                .collect()
        }
        "VM_metrics" => model
            .vms
            .iter()
            .map(|vm| (vm.metrics.opaque_ref.clone(), vm_metrics(model, vm)))
            .collect(),
        "VM_guest_metrics" => model
            .vms
            .iter()
            .filter_map(|vm| {
                vm.guest_metrics
                    .as_ref()
                    .map(|gm| (gm.opaque_ref.clone(), guest_metrics(vm, &gm.uuid)))
            })
            .collect(),
        "SR" => (0..model.srs.len())
            .filter(|&s| !model.srs[s].hidden)
            .map(|s| (model.srs[s].id.opaque_ref.clone(), sr_record(model, s)))
            .collect(),
        "PBD" => model
            .pbds
            .iter()
            .map(|p| {
                let rec = R::new(&p.id.uuid)
                    .s("host", &model.hosts[p.host].id.opaque_ref)
                    .s("SR", &model.srs[p.sr].id.opaque_ref)
                    .m("device_config", V::string_map(&p.device_config))
                    .b("currently_attached", p.attached)
                    .m("other_config", V::string_map(&p.other_config))
                    .v();
                (p.id.opaque_ref.clone(), rec)
            })
            .collect(),
        "PIF" => model
            .pifs
            .iter()
            .map(|p| (p.id.opaque_ref.clone(), pif_record(model, p)))
            .collect(),
        "PIF_metrics" => model
            .pifs
            .iter()
            .map(|p| (p.metrics.opaque_ref.clone(), pif_metrics(model, p)))
            .collect(),
        "VDI" => {
            let vbds = by_key(model.vms.iter().flat_map(|vm| {
                vm.vbds
                    .iter()
                    .filter_map(|b| b.vdi.as_deref().map(|d| (d, b.id.opaque_ref.clone())))
            }));
            let snapshots = by_key(model.vdis.iter().filter_map(|d| {
                d.snapshot_of
                    .as_deref()
                    .map(|of| (of, d.id.opaque_ref.clone()))
            }));
            (0..model.vdis.len())
                .map(|d| {
                    let r = model.vdis[d].id.opaque_ref.as_str();
                    let list = |m: &HashMap<&str, Vec<String>>| {
                        m.get(r).map_or(&[][..], Vec::as_slice).to_vec()
                    };
                    let rec = vdi_record(model, d, list(&vbds), list(&snapshots));
                    (r.to_string(), rec)
                })
                .collect()
        }
        "VBD" => model
            .vms
            .iter()
            .flat_map(|vm| vm.vbds.iter().map(move |b| (vm, b)))
            .map(|(vm, b)| {
                let rec = R::new(&b.id.uuid)
                    .strs(
                        "allowed_operations",
                        if vm.has_domain() {
                            &["attach", "unplug"][..]
                        } else {
                            &["attach"][..]
                        },
                    )
                    .m("current_operations", V::Map(Vec::new()))
                    .s("VM", &vm.id.opaque_ref)
                    .s("VDI", b.vdi.as_deref().unwrap_or(NULL_REF))
                    .s(
                        "device",
                        if vm.has_domain() {
                            b.device.as_str()
                        } else {
                            ""
                        },
                    )
                    .s("userdevice", &b.userdevice)
                    .b("bootable", b.userdevice == "0")
                    .s("mode", if b.is_cd { "RO" } else { "RW" })
                    .s("type", if b.is_cd { "CD" } else { "Disk" })
                    .b("unpluggable", true)
                    .b("storage_lock", false)
                    .b("empty", b.vdi.is_none())
                    .m("other_config", V::Map(Vec::new()))
                    .b("currently_attached", vm.has_domain())
                    .i("status_code", 0)
                    .s("status_detail", "")
                    .m("runtime_properties", V::Map(Vec::new()))
                    .s("qos_algorithm_type", "")
                    .m("qos_algorithm_params", V::Map(Vec::new()))
                    .strs("qos_supported_algorithms", &[])
                    .s("metrics", NULL_REF)
                    .v();
                (b.id.opaque_ref.clone(), rec)
            })
            .collect(),
        "VIF" => model
            .vms
            .iter()
            .flat_map(|vm| vm.vifs.iter().map(move |f| (vm, f)))
            .map(|(vm, f)| {
                let net = &model.networks[f.network];
                let rec = R::new(&f.id.uuid)
                    .strs("allowed_operations", &["attach", "unplug"])
                    .m("current_operations", V::Map(Vec::new()))
                    .s("device", f.device.to_string())
                    .s("network", &net.id.opaque_ref)
                    .s("VM", &vm.id.opaque_ref)
                    .s("MAC", &f.mac)
                    .i("MTU", net.mtu)
                    .m("other_config", V::Map(Vec::new()))
                    .b("currently_attached", vm.has_domain())
                    .i("status_code", 0)
                    .s("status_detail", "")
                    .m("runtime_properties", V::Map(Vec::new()))
                    .s("qos_algorithm_type", "")
                    .m("qos_algorithm_params", V::Map(Vec::new()))
                    .strs("qos_supported_algorithms", &[])
                    .s("metrics", NULL_REF)
                    .b("MAC_autogenerated", true)
                    .s("locking_mode", "network_default")
                    .strs("ipv4_allowed", &[])
                    .strs("ipv6_allowed", &[])
                    .s("ipv4_configuration_mode", "None")
                    .strs("ipv4_addresses", &[])
                    .s("ipv4_gateway", "")
                    .s("ipv6_configuration_mode", "None")
                    .strs("ipv6_addresses", &[])
                    .s("ipv6_gateway", "")
                    .s("PCI", NULL_REF)
                    .v();
                (f.id.opaque_ref.clone(), rec)
            })
            .collect(),
        "network" => (0..model.networks.len())
            .map(|n| {
                let net = &model.networks[n];
                let vifs: Vec<String> = model
                    .vms
                    .iter()
                    .flat_map(|vm| vm.vifs.iter())
                    .filter(|f| f.network == n)
                    .map(|f| f.id.opaque_ref.clone())
                    .collect();
                let pifs: Vec<String> = refs_where(&model.pifs, |p| p.network == n);
                let rec = R::new(&net.id.uuid)
                    .s("name_label", &net.name)
                    .s("name_description", "")
                    .strs("allowed_operations", &[])
                    .m("current_operations", V::Map(Vec::new()))
                    .m("VIFs", V::strings(vifs))
                    .m("PIFs", V::strings(pifs))
                    .i("MTU", net.mtu)
                    .m("other_config", V::Map(Vec::new()))
                    .s("bridge", &net.bridge)
                    .b("managed", true)
                    .m("blobs", V::Map(Vec::new()))
                    .strs("tags", &[])
                    .s("default_locking_mode", "unlocked")
                    .m("assigned_ips", V::Map(Vec::new()))
                    .strs("purpose", &[])
                    .v();
                (net.id.opaque_ref.clone(), rec)
            })
            .collect(),
        "Certificate" => model
            .certificates
            .iter()
            .map(|c| (c.id.opaque_ref.clone(), certificate(model, c, ctx)))
            .collect(),
        MESSAGE => model
            .messages
            .iter()
            .map(|m| (m.id.opaque_ref.clone(), message(m)))
            .collect(),
        _ => return None,
    };
    Some(out)
}

/// A `message` record (datamodel.ml `Message`): priority an int, timestamp a datetime.
pub(super) fn message(m: &Message) -> V {
    R::new(&m.id.uuid)
        .s("name", &m.name)
        .i("priority", m.priority)
        .s("cls", &m.cls)
        .s("obj_uuid", &m.obj_uuid)
        .d("timestamp", m.timestamp)
        .s("body", &m.body)
        .v()
}

/// A `Certificate` record. xapi 1.249 has `uuid, host, not_before, not_after,
/// fingerprint`; `name` and `type` arrived in 1.294, `fingerprint_sha256` and
/// `fingerprint_sha1` in 24.19.0 (datamodel_certificate.ml), `fingerprint` kept since.
fn certificate(model: &Model, c: &Certificate, ctx: RecordCtx) -> V {
    let legacy = ctx.generation == Generation::Legacy;
    let host = c
        .host
        .map_or(NULL_REF, |h| model.hosts[h].id.opaque_ref.as_str());
    R::new(&c.id.uuid)
        .when(!legacy, |r| r.s("name", &c.name).s("type", c.kind.as_str()))
        .s("host", host)
        .d("not_before", c.not_before)
        .d("not_after", c.not_after)
        .s("fingerprint", &c.sha256)
        .when(ctx.generation == Generation::Current, |r| {
            r.s("fingerprint_sha256", &c.sha256)
                .s("fingerprint_sha1", &c.sha1)
        })
        .v()
}

/// Groups values by key, keeping their order: the reverse side of one-way relations,
/// computed once per class instead of once per record.
fn by_key<'a>(pairs: impl Iterator<Item = (&'a str, String)>) -> HashMap<&'a str, Vec<String>> {
    let mut out: HashMap<&str, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        out.entry(k).or_default().push(v);
    }
    out
}

/// Record builder keeping XAPI's field order.
struct R(Vec<(String, V)>);

impl R {
    fn new(uuid: &str) -> R {
        let mut fields = Vec::with_capacity(48);
        fields.push(("uuid".to_string(), V::str(uuid)));
        R(fields)
    }
    fn s(mut self, k: &str, v: impl Into<String>) -> R {
        self.0.push((k.to_string(), V::Str(v.into())));
        self
    }
    fn i(mut self, k: &str, v: i64) -> R {
        self.0.push((k.to_string(), V::Int(v)));
        self
    }
    fn b(mut self, k: &str, v: bool) -> R {
        self.0.push((k.to_string(), V::Bool(v)));
        self
    }
    fn f(mut self, k: &str, v: f64) -> R {
        self.0.push((k.to_string(), V::Float(v)));
        self
    }
    fn d(mut self, k: &str, epoch: i64) -> R {
        self.0.push((k.to_string(), V::DateTime(iso8601(epoch))));
        self
    }
    fn m(mut self, k: &str, v: V) -> R {
        self.0.push((k.to_string(), v));
        self
    }
    fn strs(mut self, k: &str, v: &[&str]) -> R {
        self.0.push((k.to_string(), V::strings(v.iter().copied())));
        self
    }
    fn kv(mut self, k: &str, pairs: &[(&str, &str)]) -> R {
        let m = pairs
            .iter()
            .map(|(a, b)| ((*a).to_string(), V::str(*b)))
            .collect();
        self.0.push((k.to_string(), V::Map(m)));
        self
    }
    /// Applies `f` only when `cond`: fields that some xapi generations lack.
    fn when(self, cond: bool, f: impl FnOnce(R) -> R) -> R {
        if cond { f(self) } else { self }
    }
    /// `pending_guidances` and its later siblings, as far as the generation has them.
    fn guidances(self, g: Generation, pending: &[String]) -> R {
        self.when(has_guidances(g), |r| {
            r.m("pending_guidances", V::strings(pending.iter().cloned()))
        })
        .when(has_guidance_levels(g), |r| {
            r.strs("pending_guidances_recommended", &[])
                .strs("pending_guidances_full", &[])
        })
    }
    fn v(self) -> V {
        V::Map(self.0)
    }
}

/// `pending_guidances` on hosts and VMs exists from xapi 1.303 (datamodel_host.ml,
/// datamodel_vm.ml): not in 1.249.
fn has_guidances(g: Generation) -> bool {
    g != Generation::Legacy
}

/// `pending_guidances_recommended` / `_full` arrived in xapi 24.10.0.
fn has_guidance_levels(g: Generation) -> bool {
    g == Generation::Current
}

/// `host.other_config`: `boot_time` and `agent_start_time` as OCaml `string_of_float`
/// text (dbsync_slave.ml), and Xen Orchestra's `rpm_patch_installation_time`.
fn host_other_config(host: &Host) -> V {
    let mut m = vec![
        ("agent_start_time", format!("{}.", host.boot_time + 40)),
        ("boot_time", format!("{}.", host.boot_time)),
        ("iscsi_iqn", host.iqn.clone()),
        ("multipathing", host.multipathing.to_string()),
        ("multipathhandle", "dmp".to_string()),
    ];
    if let Some(ms) = host.rpm_patch_installation_ms {
        m.push(("rpm_patch_installation_time", js_seconds(ms)));
    }
    V::Map(
        m.into_iter()
            .map(|(k, v)| (k.to_string(), V::Str(v)))
            .collect(),
    )
}

/// JavaScript's `String(Date.now() / 1000)`, which is how Xen Orchestra writes
/// `rpm_patch_installation_time`: whole seconds bare, else up to three decimals without
/// trailing zeros (`"1712345678.25"`).
pub(super) fn js_seconds(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if frac == 0 {
        return secs.to_string();
    }
    let digits = format!("{frac:03}");
    format!("{secs}.{}", digits.trim_end_matches('0'))
}

/// `license_params["expiry"]`: an XAPI datetime, or `never` (license_check.ml).
pub(super) fn license_expiry(expiry: Option<i64>) -> String {
    expiry.map_or_else(|| "never".to_string(), iso8601)
}

/// XAPI's datetime text, `YYYYMMDDTHH:MM:SSZ`.
pub(super) fn iso8601(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `host.software_version` of one xapi generation.
pub(super) struct SoftwareVersion {
    brand: &'static str,
    pub(super) product: &'static str,
    product_text: &'static str,
    platform: &'static str,
    xapi: &'static str,
    xapi_build: &'static str,
    pub(super) xen: &'static str,
    date: &'static str,
    api_minor: i64,
}

pub(super) fn software_version(g: Generation) -> SoftwareVersion {
    match g {
        Generation::Legacy => SoftwareVersion {
            brand: "XCP-ng",
            product: "8.2.1",
            product_text: "8.2",
            platform: "3.2.1",
            xapi: "1.249",
            xapi_build: "1.249.41",
            xen: "4.13.5-9.40",
            date: "2024-11-18",
            api_minor: 16,
        },
        Generation::Nested => SoftwareVersion {
            brand: "XenServer",
            product: "8.4.0",
            product_text: "8",
            platform: "3.4.0",
            xapi: "24.3",
            xapi_build: "24.3.0",
            xen: "4.17.3-3",
            date: "2024-02-21",
            api_minor: 21,
        },
        Generation::Current => SoftwareVersion {
            brand: "XCP-ng",
            product: "8.3.0",
            product_text: "8.3",
            platform: "3.4.0",
            xapi: "25.33",
            xapi_build: "25.33.1",
            xen: "4.17.5-15",
            date: "2025-11-03",
            api_minor: 21,
        },
    }
}

fn pool(model: &Model) -> V {
    let p = &model.pool;
    let master = &model.hosts[p.master];
    let default_sr = &model.srs[p.default_sr].id.opaque_ref;
    R::new(&p.id.uuid)
        .s("name_label", &p.name)
        .s("name_description", "")
        .s("master", &master.id.opaque_ref)
        .s("default_SR", default_sr)
        .s("suspend_image_SR", default_sr)
        .s("crash_dump_SR", default_sr)
        .kv(
            "other_config",
            &[
                ("auto_poweron", "false"),
                ("memory-ratio-hvm", "0.25"),
                ("memory-ratio-pv", "0.25"),
            ],
        )
        .b("ha_enabled", p.ha_enabled)
        .m("ha_configuration", V::Map(Vec::new()))
        .strs("ha_statefiles", &[])
        .i(
            "ha_host_failures_to_tolerate",
            p.ha_host_failures_to_tolerate,
        )
        .i("ha_plan_exists_for", p.ha_plan_exists_for)
        .b("ha_allow_overcommit", false)
        .b("ha_overcommitted", p.ha_overcommitted)
        .m("blobs", V::Map(Vec::new()))
        .strs("tags", &[])
        .m("gui_config", V::Map(Vec::new()))
        .m("health_check_config", V::Map(Vec::new()))
        .s("wlb_url", "")
        .s("wlb_username", "")
        .b("wlb_enabled", false)
        .b("wlb_verify_cert", false)
        .b("redo_log_enabled", false)
        .s("redo_log_vdi", NULL_REF)
        .s("vswitch_controller", "")
        .kv(
            "restrictions",
            &[
                ("restrict_rbac", "false"),
                ("restrict_pool_size", "false"),
                ("enable_xha", "true"),
            ],
        )
        .strs("metadata_VDIs", &[])
        .s("ha_cluster_stack", "xhad")
        .strs(
            "allowed_operations",
            &["ha_enable", "cluster_create", "designate_new_master"],
        )
        .m("current_operations", V::Map(Vec::new()))
        .m("guest_agent_config", V::Map(Vec::new()))
        .kv(
            "cpu_info",
            &[
                ("cpu_count", &(master.pcpus * model.hosts.len()).to_string()),
                ("socket_count", &(2 * model.hosts.len()).to_string()),
                ("vendor", "GenuineIntel"),
            ],
        )
        .b("policy_no_vendor_device", false)
        .b("live_patching_disabled", false)
        .b("igmp_snooping_enabled", false)
        .s("uefi_certificates", "")
        .b("is_psr_pending", false)
        .b("tls_verification_enabled", true)
        .strs("repositories", &[])
        .b("client_certificate_auth_enabled", false)
        .s("client_certificate_auth_name", "")
        .s("repository_proxy_url", "")
        .s("repository_proxy_username", "")
        .s("repository_proxy_password", NULL_REF)
        .b("migration_compression", false)
        .b("coordinator_bias", true)
        .s("telemetry_uuid", NULL_REF)
        .s("telemetry_frequency", "weekly")
        .d("telemetry_next_collection", 0)
        .d("last_update_sync", 0)
        .s("update_sync_frequency", "weekly")
        .i("update_sync_day", 0)
        .b("update_sync_enabled", false)
        .m("recommendations", V::Map(Vec::new()))
        .kv(
            "license_server",
            &[("address", "localhost"), ("port", "27000")],
        )
        .b("ha_reboot_vm_on_internal_shutdown", true)
        .i("ext_auth_max_threads", 1)
        .i("local_auth_max_threads", 8)
        .v()
}

fn host_record(model: &Model, h: usize, host: &Host, ctx: RecordCtx) -> V {
    let sv = software_version(ctx.generation);
    let resident: Vec<String> = refs_where(&model.vms, |v| v.resident_on == Some(h));
    let pifs: Vec<String> = refs_where(&model.pifs, |p| p.host == h);
    let pbds: Vec<String> = refs_where(&model.pbds, |p| p.host == h);
    let dom0 = model
        .vms
        .iter()
        .find(|v| v.kind == VmKind::ControlDomain && v.resident_on == Some(h))
        .map_or(NULL_REF, |v| v.id.opaque_ref.as_str());
    let local_sr = model
        .local_sr(h)
        .map_or(NULL_REF, |s| model.srs[s].id.opaque_ref.as_str());
    let pcpus = host.pcpus.to_string();
    let sockets = if host.pcpus >= 2 { "2" } else { "1" };
    R::new(&host.id.uuid)
        .s("name_label", &host.name)
        .s("name_description", "Default install")
        .i("memory_overhead", 1_409_286_144)
        .strs("allowed_operations", &["vm_migrate", "provision", "vm_resume", "evacuate", "vm_start"])
        .m("current_operations", V::Map(Vec::new()))
        .i("API_version_major", 2)
        .i("API_version_minor", sv.api_minor)
        .s("API_version_vendor", "XenSource")
        .m("API_version_vendor_implementation", V::Map(Vec::new()))
        .b("enabled", host.enabled)
        .kv(
            "software_version",
            &[
                ("product_version", sv.product),
                ("product_version_text", sv.product_text),
                ("product_version_text_short", sv.product_text),
                ("platform_name", "XCP"),
                ("platform_version", sv.platform),
                ("product_brand", sv.brand),
                ("build_number", "release"),
                ("hostname", &host.name),
                ("date", sv.date),
                ("dbv", "2024.0101"),
                ("xapi", sv.xapi),
                ("xapi_build", sv.xapi_build),
                ("xen", sv.xen),
                ("linux", "4.19.0+1"),
                ("xencenter_min", "2.21"),
                ("xencenter_max", "2.21"),
                ("network_backend", "openvswitch"),
                ("db_schema", "5.786"),
            ],
        )
        .m("other_config", host_other_config(host))
        .strs("capabilities", &["xen-3.0-x86_64", "hvm-3.0-x86_32", "hvm-3.0-x86_32p", "hvm-3.0-x86_64", ""])
        .m("cpu_configuration", V::Map(Vec::new()))
        .s("sched_policy", "credit")
        .strs("supported_bootloaders", &["pygrub", "eliloader"])
        .m("resident_VMs", V::strings(resident))
        .m("logging", V::Map(Vec::new()))
        .m("PIFs", V::strings(pifs))
        .s("suspend_image_sr", local_sr)
        .s("crash_dump_sr", local_sr)
        .strs("crashdumps", &[])
        .strs("patches", &[])
        .strs("updates", &[])
        .m("PBDs", V::strings(pbds))
        .m("host_CPUs", V::strings(host.cpus.iter().map(|c| c.opaque_ref.clone())))
        .kv(
            "cpu_info",
            &[
                ("cpu_count", &pcpus),
                ("socket_count", sockets),
                ("threads_per_core", "2"),
                ("nr_nodes", sockets),
                ("vendor", "GenuineIntel"),
                ("speed", &format!("{:.3}", host.cpu_speed_mhz)),
                ("modelname", CPU_MODEL),
                ("family", "6"),
                ("model", "85"),
                ("stepping", "7"),
                ("flags", "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht syscall nx lm constant_tsc rep_good nopl nonstop_tsc cpuid pni pclmulqdq monitor est ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm"),
                ("features_pv", "1fc9cbf5-f6f83203-2991cbf5-00000123-00000007"),
                ("features_hvm", "1fcbfbff-f7fa3223-2d93fbff-00000523-0000000f"),
            ],
        )
        .s("hostname", &host.name)
        .s("address", &host.address)
        .s("metrics", &host.metrics.opaque_ref)
        .kv(
            "license_params",
            &[("sku_type", "free"), ("expiry", &license_expiry(host.license_expiry)), ("edition", "xcp-ng"), ("sockets", sockets), ("productcode", ""), ("restrict_rbac", "false")],
        )
        .strs("ha_statefiles", &[])
        .strs("ha_network_peers", &[])
        .m("blobs", V::Map(Vec::new()))
        .m("tags", V::strings(host.tags.iter().cloned()))
        .s("external_auth_type", "")
        .s("external_auth_service_name", "")
        .m("external_auth_configuration", V::Map(Vec::new()))
        .s("edition", "xcp-ng")
        .kv("license_server", &[("address", "localhost"), ("port", "27000")])
        .kv(
            "bios_strings",
            &[
                ("bios-vendor", "American Megatrends Inc."),
                ("bios-version", "3.4"),
                ("system-manufacturer", "Supermicro"),
                ("system-product-name", "SYS-1029P-WTR"),
                ("system-version", "0123456789"),
                ("system-serial-number", &format!("S{:08}", h + 1)),
            ],
        )
        .s("power_on_mode", "")
        .m("power_on_config", V::Map(Vec::new()))
        .s("local_cache_sr", NULL_REF)
        .kv("chipset_info", &[("iommu", "true")])
        .strs("PCIs", &[])
        .strs("PGPUs", &[])
        .strs("PUSBs", &[])
        .b("ssl_legacy", false)
        .m("guest_VCPUs_params", V::Map(Vec::new()))
        .s("display", "enabled")
        .strs("virtual_hardware_platform_versions", &["0", "1", "2"])
        .s("control_domain", dom0)
        .m(
            "updates_requiring_reboot",
            V::strings(host.updates_requiring_reboot.iter().cloned()),
        )
        .strs("features", &[])
        .s("iscsi_iqn", &host.iqn)
        .b("multipathing", host.multipathing)
        .s("uefi_certificates", "")
        .m(
            "certificates",
            V::strings(
                model
                    .certificates
                    .iter()
                    .filter(|c| c.host == Some(h))
                    .map(|c| c.id.opaque_ref.clone()),
            ),
        )
        .strs("editions", &["xcp-ng"])
        .when(has_guidances(ctx.generation), |r| {
            r.m("pending_guidances", V::strings(host.pending_guidances.iter().cloned()))
        })
        .b("tls_verification_enabled", true)
        .d("last_software_update", host.boot_time - 86_400)
        .b("https_only", false)
        .s("latest_synced_updates_applied", "unknown")
        .s("numa_affinity_policy", "default_policy")
        .when(has_guidance_levels(ctx.generation), |r| {
            r.strs("pending_guidances_recommended", &[]).strs("pending_guidances_full", &[])
        })
        .s("last_update_hash", "")
        .v()
}

fn host_metrics(host: &Host) -> V {
    R::new(&host.metrics.uuid)
        .i("memory_total", host.memory_total)
        .b("live", host.live)
        .d("last_updated", host.metrics_updated)
        .m("other_config", V::Map(Vec::new()))
        .v()
}

/// The CPU every simulated host has (also in `host.cpu_info`).
pub(super) const CPU_MODEL: &str = "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz";

fn host_cpu(host: &Host, n: usize, uuid: &str) -> V {
    R::new(uuid)
        .s("host", &host.id.opaque_ref)
        .i("number", n as i64)
        .s("vendor", "GenuineIntel")
        .i("speed", host.cpu_speed_mhz as i64)
        .s("modelname", CPU_MODEL)
        .i("family", 6)
        .i("model", 85)
        .s("stepping", "7")
        .s("flags", "fpu de tsc msr pae mce cx8 apic sep mca cmov pat clflush acpi mmx fxsr sse sse2 ht syscall nx lm")
        .s("features", "1fcbfbff-f7fa3223-2d93fbff-00000523-0000000f")
        // Removed from the datamodel's meaning long ago: xapi leaves it at 0.
        .f("utilisation", 0.0)
        .m("other_config", V::Map(Vec::new()))
        .v()
}

fn pif_metrics(model: &Model, p: &Pif) -> V {
    let (vendor, device, speed) = if p.physical {
        (
            "Intel Corporation",
            "Ethernet Controller X710 for 10GbE SFP+",
            10_000,
        )
    } else {
        // A bond reports the sum of its members.
        ("", "", 20_000)
    };
    R::new(&p.metrics.uuid)
        .b("carrier", true)
        .s("vendor_id", if p.physical { "8086" } else { "" })
        .s("vendor_name", vendor)
        .s("device_id", if p.physical { "1572" } else { "" })
        .s("device_name", device)
        .i("speed", speed)
        .b("duplex", true)
        .s(
            "pci_bus_path",
            if p.physical {
                format!("0000:3b:00.{}", p.device.trim_start_matches("eth"))
            } else {
                String::new()
            },
        )
        .d("last_updated", model.hosts[p.host].boot_time + 60)
        .m("other_config", V::Map(Vec::new()))
        .v()
}

fn vm_record(model: &Model, vm: &Vm, snapshots: &[String], ctx: RecordCtx) -> V {
    let host_ref = |h: Option<usize>| h.map_or(NULL_REF, |h| model.hosts[h].id.opaque_ref.as_str());
    let running = vm.has_domain();
    let allowed: &[&str] = match (vm.kind, vm.power) {
        (VmKind::ControlDomain, _) => &["changing_dynamic_range", "changing_static_range"],
        (VmKind::Template, _) => &[
            "changing_dynamic_range",
            "changing_static_range",
            "changing_shadow_memory",
            "changing_VCPUs",
            "changing_memory_limits",
            "clone",
            "copy",
            "export",
            "provision",
            "destroy",
        ],
        (VmKind::Snapshot, _) => &[
            "changing_dynamic_range",
            "changing_static_range",
            "clone",
            "copy",
            "export",
            "revert",
            "destroy",
        ],
        (VmKind::Guest, Power::Running) => &[
            "changing_dynamic_range",
            "migrate_send",
            "pool_migrate",
            "changing_VCPUs_live",
            "suspend",
            "hard_reboot",
            "hard_shutdown",
            "clean_reboot",
            "clean_shutdown",
            "pause",
            "checkpoint",
            "snapshot",
            "export",
        ],
        (VmKind::Guest, Power::Paused) => &[
            "changing_dynamic_range",
            "unpause",
            "hard_reboot",
            "hard_shutdown",
            "snapshot",
            "export",
        ],
        (VmKind::Guest, Power::Suspended) => {
            &["resume", "resume_on", "hard_shutdown", "snapshot", "export"]
        }
        (VmKind::Guest, Power::Halted) => &[
            "changing_dynamic_range",
            "changing_static_range",
            "changing_shadow_memory",
            "changing_VCPUs",
            "changing_memory_limits",
            "start",
            "start_on",
            "clone",
            "copy",
            "snapshot",
            "export",
            "destroy",
        ],
    };
    let dom0 = vm.is_control_domain();
    let other_config: Vec<(String, String)> = match vm.kind {
        VmKind::ControlDomain => vec![
            ("storage_driver_domain".into(), NULL_REF.into()),
            ("is_system_domain".into(), "true".into()),
        ],
        VmKind::Template => vec![
            ("default_template".into(), "true".into()),
            ("install-methods".into(), "cdrom,nfs,http,ftp".into()),
            (
                "linux_template".into(),
                (!vm.os.starts_with("Windows")).to_string(),
            ),
        ],
        _ => vec![
            ("base_template_name".into(), vm.os.clone()),
            (
                "mac_seed".into(),
                super::rng::uuid(model.seed, "mac_seed", super::rng::hash_str(0, &vm.id.uuid)),
            ),
            ("install-methods".into(), "cdrom,nfs,http,ftp".into()),
            ("import_task".into(), NULL_REF.into()),
        ],
    };
    R::new(&vm.id.uuid)
        .strs("allowed_operations", allowed)
        .m("current_operations", V::Map(Vec::new()))
        .s("name_label", &vm.name)
        .s("name_description", &vm.description)
        .s("power_state", vm.power.as_str())
        .i("user_version", 1)
        .b("is_a_template", vm.is_template())
        .b("is_default_template", vm.is_default_template)
        .s("suspend_VDI", NULL_REF)
        .s("resident_on", host_ref(vm.resident_on))
        .s("scheduled_to_be_resident_on", NULL_REF)
        .s("affinity", host_ref(vm.affinity))
        .i("memory_overhead", if dom0 { 0 } else { 12_582_912 })
        .i(
            "memory_target",
            if running { vm.memory_dynamic_max } else { 0 },
        )
        .i("memory_static_max", vm.memory_static_max)
        .i("memory_dynamic_max", vm.memory_dynamic_max)
        .i("memory_dynamic_min", vm.memory_dynamic_min)
        .i("memory_static_min", vm.memory_static_min)
        .m("VCPUs_params", V::Map(Vec::new()))
        .i("VCPUs_max", vm.vcpus as i64)
        .i("VCPUs_at_startup", vm.vcpus as i64)
        .s("actions_after_softreboot", "soft_reboot")
        .s("actions_after_shutdown", "destroy")
        .s("actions_after_reboot", "restart")
        .s(
            "actions_after_crash",
            if dom0 { "destroy" } else { "restart" },
        )
        .strs("consoles", &[])
        .m(
            "VIFs",
            V::strings(vm.vifs.iter().map(|f| f.id.opaque_ref.clone())),
        )
        .m(
            "VBDs",
            V::strings(vm.vbds.iter().map(|b| b.id.opaque_ref.clone())),
        )
        .strs("VUSBs", &[])
        .strs("crash_dumps", &[])
        .strs("VTPMs", &[])
        .s("PV_bootloader", "")
        .s("PV_kernel", "")
        .s("PV_ramdisk", "")
        .s("PV_args", "")
        .s("PV_bootloader_args", "")
        .s("PV_legacy_args", "")
        .s("HVM_boot_policy", if dom0 { "" } else { "BIOS order" })
        .m(
            "HVM_boot_params",
            if dom0 {
                V::Map(Vec::new())
            } else {
                V::Map(vec![
                    ("order".into(), V::str("cd")),
                    ("firmware".into(), V::str("bios")),
                ])
            },
        )
        .f("HVM_shadow_multiplier", 1.0)
        .m(
            "platform",
            if dom0 {
                V::Map(Vec::new())
            } else {
                V::Map(
                    [
                        ("timeoffset", "0"),
                        ("device-model", "qemu-upstream-compat"),
                        ("videoram", "8"),
                        ("hpet", "true"),
                        ("secureboot", "false"),
                        ("vga", "std"),
                        ("apic", "true"),
                        ("viridian", "false"),
                        ("nx", "true"),
                        ("acpi", "1"),
                        ("cores-per-socket", "1"),
                        ("pae", "true"),
                    ]
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), V::str(*v)))
                    .collect(),
                )
            },
        )
        .s("PCI_bus", "")
        .m("other_config", V::string_map(&other_config))
        .i("domid", vm.domid)
        .s("domarch", if running { "x64" } else { "" })
        .m(
            "last_boot_CPU_flags",
            if running && !dom0 {
                V::Map(vec![
                    ("vendor".into(), V::str("GenuineIntel")),
                    (
                        "features".into(),
                        V::str("1fcbfbff-f7fa3223-2d93fbff-00000523"),
                    ),
                ])
            } else {
                V::Map(Vec::new())
            },
        )
        .b("is_control_domain", dom0)
        .s("metrics", &vm.metrics.opaque_ref)
        .s(
            "guest_metrics",
            vm.guest_metrics
                .as_ref()
                .map_or(NULL_REF, |g| g.opaque_ref.as_str()),
        )
        .s("last_booted_record", "")
        .s("recommendations", "")
        .m("xenstore_data", V::Map(Vec::new()))
        .b("ha_always_run", false)
        .s("ha_restart_priority", "")
        .b("is_a_snapshot", vm.is_snapshot())
        .s("snapshot_of", vm.snapshot_of.as_deref().unwrap_or(NULL_REF))
        .m("snapshots", V::strings(snapshots.iter().cloned()))
        .d("snapshot_time", vm.snapshot_time)
        .s("transportable_snapshot_id", "")
        .m("blobs", V::Map(Vec::new()))
        .m("tags", V::strings(vm.tags.iter().cloned()))
        .m("blocked_operations", V::Map(Vec::new()))
        .m("snapshot_info", V::Map(Vec::new()))
        .s("snapshot_metadata", "")
        .s("parent", NULL_REF)
        .strs("children", &[])
        .m("bios_strings", V::Map(Vec::new()))
        .s("protection_policy", NULL_REF)
        .s("snapshot_schedule", NULL_REF)
        .b("is_vmss_snapshot", false)
        .s("appliance", NULL_REF)
        .i("start_delay", 0)
        .i("shutdown_delay", 0)
        .i("order", 0)
        .strs("VGPUs", &[])
        .strs("attached_PCIs", &[])
        .s("suspend_SR", NULL_REF)
        .i("version", 0)
        .s("generation_id", if dom0 { "" } else { "0:0" })
        .i("hardware_platform_version", if dom0 { 0 } else { 2 })
        .b("has_vendor_device", false)
        .b("requires_reboot", vm.requires_reboot)
        .s("reference_label", "")
        .s("domain_type", vm.domain_type)
        .m("NVRAM", V::Map(Vec::new()))
        .guidances(ctx.generation, &vm.pending_guidances)
        .v()
}

fn vm_metrics(model: &Model, vm: &Vm) -> V {
    let running = vm.has_domain();
    let pcpus = vm.resident_on.map_or(1, |h| model.hosts[h].pcpus.max(1));
    let vcpus_cpu: Vec<(String, V)> = if running {
        (0..vm.vcpus)
            .map(|c| {
                (
                    c.to_string(),
                    V::Int(((c * 3 + vm.domid.max(0) as usize) % pcpus) as i64),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    R::new(&vm.metrics.uuid)
        .i(
            "memory_actual",
            if running { vm.memory_dynamic_max } else { 0 },
        )
        .i("VCPUs_number", if running { vm.vcpus as i64 } else { 0 })
        .m("VCPUs_CPU", V::Map(vcpus_cpu))
        .m("VCPUs_params", V::Map(Vec::new()))
        .strs("VCPUs_flags", &[])
        .strs("state", &[])
        .d("start_time", vm.start_time)
        .d("install_time", vm.install_time)
        .d("last_updated", 0)
        .m("other_config", V::Map(Vec::new()))
        .b("hvm", running && vm.domain_type == "hvm")
        .b("nested_virt", false)
        .b("nomigrate", false)
        .s(
            "current_domain_type",
            if running {
                vm.domain_type
            } else {
                "unspecified"
            },
        )
        .s("numa_optimised", "false")
        .i("numa_nodes", if running { 1 } else { 0 })
        .m("numa_node_memory", V::Map(Vec::new()))
        .v()
}

/// What a guest agent reports in `VM_guest_metrics.os_version`.
#[derive(Debug, Clone, Copy)]
pub(super) struct OsVersion {
    /// Pretty name (`PRETTY_NAME` on Linux; `caption|windir|boot device` on Windows).
    pub(super) name: &'static str,
    pub(super) distro: &'static str,
    pub(super) major: &'static str,
    pub(super) minor: &'static str,
    pub(super) uname: &'static str,
}

/// The `os_version` a guest installed from template `os` reports.
pub(super) fn os_version(os: &str) -> OsVersion {
    let v = |name, distro, major, minor, uname| OsVersion {
        name,
        distro,
        major,
        minor,
        uname,
    };
    match os {
        s if s.starts_with("Debian") => v(
            "Debian GNU/Linux 12 (bookworm)",
            "debian",
            "12",
            "8",
            "6.1.0-28-amd64",
        ),
        s if s.starts_with("Ubuntu") => v(
            "Ubuntu 24.04.1 LTS",
            "ubuntu",
            "24",
            "04",
            "6.8.0-49-generic",
        ),
        s if s.starts_with("Rocky") => v(
            "Rocky Linux 9.5 (Blue Onyx)",
            "rocky",
            "9",
            "5",
            "5.14.0-503.14.1.el9_5.x86_64",
        ),
        s if s.starts_with("AlmaLinux") => v(
            "AlmaLinux 9.5 (Teal Serval)",
            "almalinux",
            "9",
            "5",
            "5.14.0-503.11.1.el9_5.x86_64",
        ),
        s if s.starts_with("CentOS") => v(
            "CentOS Stream 9",
            "centos",
            "9",
            "0",
            "5.14.0-547.el9.x86_64",
        ),
        s if s.starts_with("Oracle") => v(
            "Oracle Linux Server 9.5",
            "oracle",
            "9",
            "5",
            "5.15.0-302.167.6.el9uek.x86_64",
        ),
        s if s.starts_with("SUSE") => v(
            "SUSE Linux Enterprise Server 15 SP5",
            "sles",
            "15",
            "5",
            "5.14.21-150500.55.83-default",
        ),
        s if s.starts_with("Windows Server 2022") => v(
            "Microsoft Windows Server 2022 Standard|C:\\Windows|\\Device\\Harddisk0\\Partition2",
            "windows",
            "10",
            "0",
            "",
        ),
        s if s.starts_with("Windows 11") => v(
            "Microsoft Windows 11 Pro|C:\\Windows|\\Device\\Harddisk0\\Partition3",
            "windows",
            "10",
            "0",
            "",
        ),
        s if s.starts_with("Windows") => v(
            "Microsoft Windows 10 Pro|C:\\Windows|\\Device\\Harddisk0\\Partition2",
            "windows",
            "10",
            "0",
            "",
        ),
        _ => v("Linux", "linux", "", "", "6.1.0"),
    }
}

/// `VM_guest_metrics.PV_drivers_version` of a guest installed from template `os`.
#[derive(Debug, Clone, Copy)]
pub(super) struct PvDrivers {
    pub(super) major: &'static str,
    pub(super) minor: &'static str,
    pub(super) micro: &'static str,
    pub(super) build: &'static str,
}

/// Windows guests run the XCP-ng Windows PV tools, Linux ones xe-guest-utilities.
pub(super) fn pv_drivers_version(os: &str) -> PvDrivers {
    if os.starts_with("Windows") {
        PvDrivers {
            major: "9",
            minor: "4",
            micro: "0",
            build: "146",
        }
    } else {
        PvDrivers {
            major: "8",
            minor: "4",
            micro: "0",
            build: "1",
        }
    }
}

fn guest_metrics(vm: &Vm, uuid: &str) -> V {
    // Addresses follow the VM, not the host or domid: migration keeps them.
    let x = super::rng::hash_str(0, &vm.id.uuid);
    let ip = format!(
        "10.{}.{}.{}",
        10 + x % 200,
        (x >> 8) % 250,
        10 + (x >> 16) % 240
    );
    let os = os_version(&vm.os);
    let pv = pv_drivers_version(&vm.os);
    R::new(uuid)
        .kv(
            "os_version",
            &[
                ("name", os.name),
                ("uname", os.uname),
                ("distro", os.distro),
                ("major", os.major),
                ("minor", os.minor),
            ],
        )
        .m("netbios_name", V::Map(Vec::new()))
        .kv(
            "PV_drivers_version",
            &[
                ("major", pv.major),
                ("minor", pv.minor),
                ("micro", pv.micro),
                ("build", pv.build),
            ],
        )
        .b("PV_drivers_up_to_date", true)
        .m("memory", V::Map(Vec::new()))
        .m("disks", V::Map(Vec::new()))
        .kv(
            "networks",
            &[("0/ip", &ip), ("0/ipv4/0", &ip), ("0/ipv6/0", "fe80::1")],
        )
        .kv(
            "other",
            &[
                ("feature-balloon", "1"),
                ("has-vendor-device", "0"),
                ("platform-feature-multiprocessor-suspend", "1"),
            ],
        )
        .d("last_updated", vm.guest_updated)
        .m("other_config", V::Map(Vec::new()))
        .b("live", true)
        .s("can_use_hotplug_vbd", "yes")
        .s("can_use_hotplug_vif", "yes")
        .b("PV_drivers_detected", true)
        .m("services", V::Map(Vec::new()))
        .v()
}

fn sr_record(model: &Model, s: usize) -> V {
    let sr = &model.srs[s];
    let pbds: Vec<String> = refs_where(&model.pbds, |p| p.sr == s);
    let vdis: Vec<String> = refs_where(&model.vdis, |d| d.sr == s);
    let allowed: &[&str] = if sr.content_type == "iso" {
        &[
            "unplug",
            "plug",
            "pbd_create",
            "update",
            "pbd_destroy",
            "scan",
        ]
    } else {
        &[
            "vdi_enable_cbt",
            "vdi_list_changed_blocks",
            "unplug",
            "plug",
            "pbd_create",
            "vdi_disable_cbt",
            "update",
            "pbd_destroy",
            "vdi_resize",
            "vdi_clone",
            "vdi_data_destroy",
            "scan",
            "vdi_snapshot",
            "vdi_mirror",
            "vdi_create",
            "vdi_destroy",
            "vdi_set_on_boot",
        ]
    };
    R::new(&sr.id.uuid)
        .s("name_label", &sr.name)
        .s("name_description", &sr.description)
        .strs("allowed_operations", allowed)
        .m("current_operations", V::Map(Vec::new()))
        .m("VDIs", V::strings(vdis))
        .m("PBDs", V::strings(pbds))
        .i("virtual_allocation", sr.virtual_allocation)
        .i("physical_utilisation", sr.physical_utilisation)
        .i("physical_size", sr.physical_size)
        .s("type", &sr.sr_type)
        .s("content_type", &sr.content_type)
        .b("shared", sr.shared)
        .m("other_config", V::string_map(&sr.other_config))
        .m("tags", V::strings(sr.tags.iter().cloned()))
        .m("sm_config", V::string_map(&sr.sm_config))
        .m("blobs", V::Map(Vec::new()))
        .b("local_cache_enabled", false)
        .s("introduced_by", NULL_REF)
        .b("clustered", false)
        .b("is_tools_sr", false)
        .v()
}

fn pif_record(model: &Model, p: &Pif) -> V {
    let net = &model.networks[p.network];
    let static_ip = !p.ip.is_empty();
    R::new(&p.id.uuid)
        .s("device", &p.device)
        .s("network", &net.id.opaque_ref)
        .s("host", &model.hosts[p.host].id.opaque_ref)
        .s("MAC", &p.mac)
        .i("MTU", net.mtu)
        .i("VLAN", -1)
        .s("metrics", &p.metrics.opaque_ref)
        .b("physical", p.physical)
        .b("currently_attached", true)
        .s(
            "ip_configuration_mode",
            if static_ip { "Static" } else { "None" },
        )
        .s("IP", &p.ip)
        .s("netmask", if static_ip { "255.0.0.0" } else { "" })
        .s("gateway", "")
        .s("DNS", "")
        .s("bond_slave_of", NULL_REF)
        .m(
            "bond_master_of",
            V::strings(p.bond_master_of.iter().cloned()),
        )
        .s("VLAN_master_of", NULL_REF)
        .strs("VLAN_slave_of", &[])
        .b("management", p.management)
        .m("other_config", V::Map(Vec::new()))
        .b("disallow_unplug", false)
        .strs("tunnel_access_PIF_of", &[])
        .strs("tunnel_transport_PIF_of", &[])
        .s("ipv6_configuration_mode", "None")
        .strs("IPv6", &[])
        .s("ipv6_gateway", "")
        .s("primary_address_type", "IPv4")
        .b("managed", true)
        .m(
            "properties",
            if p.physical {
                V::Map(vec![("gro".into(), V::str("on"))])
            } else {
                V::Map(Vec::new())
            },
        )
        .strs(
            "capabilities",
            if p.physical { &["fcoe"][..] } else { &[][..] },
        )
        .s("igmp_snooping_status", "disabled")
        .strs("sriov_physical_PIF_of", &[])
        .strs("sriov_logical_PIF_of", &[])
        .s("PCI", NULL_REF)
        .v()
}

fn vdi_record(model: &Model, d: usize, vbds: Vec<String>, snapshots: Vec<String>) -> V {
    let vdi = &model.vdis[d];
    R::new(&vdi.id.uuid)
        .s("name_label", &vdi.name)
        .s(
            "name_description",
            if vdi.is_iso {
                ""
            } else {
                "Created by the XAPI simulator"
            },
        )
        .strs(
            "allowed_operations",
            if vdi.is_iso {
                &["forget", "destroy", "copy", "snapshot"][..]
            } else {
                &["clone", "snapshot", "copy", "resize_online"][..]
            },
        )
        .m("current_operations", V::Map(Vec::new()))
        .s("SR", &model.srs[vdi.sr].id.opaque_ref)
        .m("VBDs", V::strings(vbds))
        .strs("crash_dumps", &[])
        .i("virtual_size", vdi.virtual_size)
        .i("physical_utilisation", vdi.physical_utilisation)
        .s("type", "user")
        .b("sharable", false)
        .b("read_only", vdi.is_iso)
        .m("other_config", V::Map(Vec::new()))
        .b("storage_lock", false)
        .s(
            "location",
            if vdi.is_iso {
                vdi.name.clone()
            } else {
                super::rng::uuid(model.seed, "vdi-location", d as u64)
            },
        )
        .b("managed", true)
        .b("missing", false)
        .s("parent", NULL_REF)
        .m("xenstore_data", V::Map(Vec::new()))
        .m("sm_config", V::Map(Vec::new()))
        .b("is_a_snapshot", vdi.is_snapshot)
        .s(
            "snapshot_of",
            vdi.snapshot_of.as_deref().unwrap_or(NULL_REF),
        )
        .m("snapshots", V::strings(snapshots))
        .d("snapshot_time", 0)
        .strs("tags", &[])
        .b("allow_caching", false)
        .s("on_boot", "persist")
        .s("metadata_of_pool", NULL_REF)
        .b("metadata_latest", false)
        .b("is_tools_iso", false)
        .b("cbt_enabled", false)
        .v()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(0), "19700101T00:00:00Z");
        assert_eq!(iso8601(1_767_225_607), "20260101T00:00:07Z");
        assert_eq!(iso8601(951_782_400), "20000229T00:00:00Z");
    }
}

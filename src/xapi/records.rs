//! The XAPI records the exporter reads, reduced to the fields it uses. Lenient like the
//! official SDKs: integers may arrive as numbers or strings, and absent fields take defaults.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// A map of object reference (`OpaqueRef:…`) to record, as `*.get_all_records` returns.
///
/// Records are boxed: a hash table has up to twice as many slots as entries, and an empty
/// slot the size of a pointer costs little where one the size of a whole record does not.
pub type Records<R> = HashMap<String, Box<R>>;

/// `host` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Host {
    /// Host UUID (the `host:<uuid>` of its RRD legend).
    pub uuid: String,
    /// Display name.
    pub name_label: String,
    /// Management address other clients connect to (IP or name).
    pub address: String,
    /// False while the host is in maintenance mode (disabled for new VMs).
    pub enabled: bool,
    /// Storage multipathing switched on (field since XenServer 7.x; older hosts only have
    /// `other_config["multipathing"]`).
    pub multipathing: Option<bool>,
    /// Only the keys the exporter reads.
    #[serde(deserialize_with = "host_other_config")]
    pub other_config: HashMap<String, String>,
    /// `product_version`, `product_brand`, `xen`, ...
    #[serde(deserialize_with = "software_version")]
    pub software_version: HashMap<String, String>,
    /// `modelname`, `cpu_count`, ...
    #[serde(deserialize_with = "cpu_info")]
    pub cpu_info: HashMap<String, String>,
    /// References of the physical CPUs.
    #[serde(rename = "host_CPUs")]
    pub host_cpus: Vec<String>,
    /// Reference of its `host_metrics`.
    pub metrics: String,
    /// Only `expiry`: `YYYYMMDDTHH:MM:SSZ` or `never` (ocaml/xapi/license_check.ml).
    #[serde(deserialize_with = "license_params")]
    pub license_params: HashMap<String, String>,
    /// What the host needs after an update (`reboot_host`, `restart_toolstack`, ...); field
    /// since xapi 1.303, empty before and on hosts updated with yum.
    #[serde(deserialize_with = "strings")]
    pub pending_guidances: Vec<String>,
    /// `pool_update` references applied since boot that need a reboot.
    #[serde(deserialize_with = "strings")]
    pub updates_requiring_reboot: Vec<String>,
    /// User tags, as given (may repeat).
    #[serde(deserialize_with = "strings")]
    pub tags: Vec<String>,
}

/// `boot_time` is OCaml float text (ocaml/xapi/dbsync_slave.ml); `rpm_patch_installation_time`
/// is what Xen Orchestra writes after a yum update, Unix seconds as decimal text.
const HOST_OTHER_CONFIG: &[&str] = &["multipathing", "boot_time", "rpm_patch_installation_time"];
const SOFTWARE_VERSION: &[&str] = &["product_version", "product_brand", "xen"];
const CPU_INFO: &[&str] = &["modelname", "cpu_count"];

/// `host_metrics` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HostMetrics {
    /// The pool master hears from the host (heartbeat).
    pub live: bool,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub memory_total: i64,
}

/// `VM` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Vm {
    /// VM UUID.
    pub uuid: String,
    /// Display name.
    pub name_label: String,
    /// dom0 of a host.
    pub is_control_domain: bool,
    /// A template, not a VM.
    pub is_a_template: bool,
    /// A snapshot, not a VM.
    pub is_a_snapshot: bool,
    /// `Halted`, `Paused`, `Running`, `Suspended`.
    pub power_state: String,
    /// Host reference or `OpaqueRef:NULL`.
    pub resident_on: String,
    /// `hvm`, `pv`, `pvh`, `pv_in_pvh` (since XenServer 7.5; empty before).
    pub domain_type: String,
    /// vCPUs at boot.
    #[serde(rename = "VCPUs_at_startup", deserialize_with = "int")]
    pub vcpus_at_startup: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub memory_static_max: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub memory_static_min: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub memory_dynamic_max: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub memory_dynamic_min: i64,
    /// Reference of its `VM_metrics`.
    pub metrics: String,
    /// Reference of its `VM_guest_metrics` (`OpaqueRef:NULL` without guest tools).
    pub guest_metrics: String,
    /// What the VM needs after an update (`restart_vm`, `restart_device_model`, ...); field
    /// since xapi 1.303, empty before.
    #[serde(deserialize_with = "strings")]
    pub pending_guidances: Vec<String>,
    /// A change waits for the next reboot; false on an XAPI without the field.
    pub requires_reboot: bool,
    /// For a snapshot: the VM it was taken of.
    pub snapshot_of: String,
    /// For a snapshot: when it was taken, XAPI's date-time form.
    pub snapshot_time: String,
    /// User tags, as given (may repeat).
    #[serde(deserialize_with = "strings")]
    pub tags: Vec<String>,
}

/// `VM_metrics` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VmMetrics {
    /// vCPUs the running domain has now.
    #[serde(rename = "VCPUs_number", deserialize_with = "int")]
    pub vcpus_number: i64,
    /// When the domain was started: XAPI's `19700101T00:00:00Z` form.
    pub start_time: String,
}

/// `VM_guest_metrics` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VmGuestMetrics {
    /// `name` and `distro`, as the guest agent reports them.
    #[serde(deserialize_with = "os_version")]
    pub os_version: OsVersion,
    /// The guest's PV drivers as `major.minor.micro`, `-build` when present; empty when a
    /// part is missing.
    #[serde(rename = "PV_drivers_version", deserialize_with = "pv_drivers_version")]
    pub pv_drivers_version: String,
}

/// What the exporter reads of `VM_guest_metrics.os_version`, kept as fields rather than a
/// map: one per VM of a large pool.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OsVersion {
    /// `name` up to its first `|` (Windows agents append the system and boot paths).
    pub name: String,
    /// `distro`.
    pub distro: String,
}

const OS_VERSION: &[&str] = &["name", "distro"];
const PV_DRIVERS_VERSION: &[&str] = &["major", "minor", "micro", "build"];

/// `SR` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Sr {
    /// SR UUID.
    pub uuid: String,
    /// Display name.
    pub name_label: String,
    /// Driver type: `ext`, `lvm`, `nfs`, `lvmoiscsi`, `iso`, `udev`, ...
    #[serde(rename = "type")]
    pub sr_type: String,
    /// `user`, `iso`, `disk` or empty.
    pub content_type: String,
    /// Reachable from every host of the pool.
    pub shared: bool,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub physical_size: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub physical_utilisation: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub virtual_allocation: i64,
    /// References of its VDIs.
    #[serde(rename = "VDIs")]
    pub vdis: Vec<String>,
    /// User tags, as given (may repeat).
    #[serde(deserialize_with = "strings")]
    pub tags: Vec<String>,
}

/// `PBD` record fields: how one host reaches one SR.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pbd {
    /// PBD UUID.
    pub uuid: String,
    /// Host reference.
    pub host: String,
    /// SR reference.
    #[serde(rename = "SR")]
    pub sr: String,
    /// Plugged.
    pub currently_attached: bool,
    /// Only the target keys: `device_config` also holds CHAP credentials, which must never
    /// be kept, logged or exported.
    #[serde(deserialize_with = "pbd_device_config")]
    pub device_config: HashMap<String, String>,
    /// `multipathed` and the `mpath-<SCSIid>` path counts storage manager writes.
    #[serde(deserialize_with = "pbd_other_config")]
    pub other_config: HashMap<String, String>,
}

const PBD_DEVICE_CONFIG: &[&str] = &[
    "target",
    "targetIQN",
    "port",
    "SCSIid",
    "server",
    "serverpath",
];

/// `PIF` record fields: a host's network interface (physical, bond or VLAN).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pif {
    /// PIF UUID.
    pub uuid: String,
    /// Interface name (`eth0`, `bond0`): the `pif` label of the RRD's `pif_<device>_*`.
    pub device: String,
    /// Host reference.
    pub host: String,
    /// VLAN tag; -1 for an untagged interface.
    #[serde(rename = "VLAN", deserialize_with = "int")]
    pub vlan: i64,
    /// Plugged.
    pub currently_attached: bool,
    /// Carries the host's management traffic.
    pub management: bool,
}

/// `VBD` record fields: a VM's virtual block device.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Vbd {
    /// The VM's reference.
    #[serde(rename = "VM")]
    pub vm: String,
    /// The VDI's reference; `OpaqueRef:NULL` for an empty CD drive.
    #[serde(rename = "VDI")]
    pub vdi: String,
    /// `xvda`, `hda`, ...: set when first plugged and kept afterwards (ocaml/xapi/xapi_xenops.ml);
    /// empty for a disk never plugged.
    pub device: String,
    /// The stable slot, `"0"`, `"1"`, ...
    pub userdevice: String,
    /// `Disk`, `CD` or `Floppy`.
    #[serde(rename = "type")]
    pub vbd_type: String,
}

impl Vbd {
    /// A disk, not a CD or floppy drive.
    pub fn is_disk(&self) -> bool {
        self.vbd_type.eq_ignore_ascii_case("disk")
    }
}

/// `VDI` record fields: a virtual disk image.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Vdi {
    /// VDI UUID.
    pub uuid: String,
    /// Display name.
    pub name_label: String,
    /// The SR's reference.
    #[serde(rename = "SR")]
    pub sr: String,
    /// Bytes the guest sees.
    #[serde(deserialize_with = "int")]
    pub virtual_size: i64,
    /// Bytes the image takes in its SR.
    #[serde(deserialize_with = "int")]
    pub physical_utilisation: i64,
}

/// `message` record fields. Never the `body`: messages are many (up to 10,000 per pool),
/// anyone with pool-operator rights writes them, and only their kind and age are exported.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Message {
    /// `HA_HOST_FAILED`, `ALARM`, ... (any text: a client may create any name).
    pub name: String,
    /// 1 is the most severe (ocaml/xapi-consts/api_messages.ml).
    #[serde(deserialize_with = "int")]
    pub priority: i64,
    /// The class of the object it is about: `VM`, `Host`, `SR`, `Pool`, ...
    pub cls: String,
    /// When it was created, XAPI's date-time form.
    pub timestamp: String,
}

/// `Certificate` record fields (class since xapi 1.249; records only for installed
/// certificates there).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Certificate {
    /// The host it belongs to; `OpaqueRef:NULL` for a pool-wide CA.
    pub host: String,
    /// `host`, `host_internal`, `ca`, `pinned`; absent before xapi 1.294, where every record
    /// is a host's server certificate.
    #[serde(rename = "type")]
    pub cert_type: String,
    /// Its name (a CA's or a pinned certificate's); absent before xapi 1.294.
    pub name: String,
    /// When it expires, XAPI's date-time form.
    pub not_after: String,
}

/// `pool` record fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Pool {
    /// Pool UUID.
    pub uuid: String,
    /// Display name (often empty).
    pub name_label: String,
    /// Reference of the master host.
    pub master: String,
    /// High availability switched on.
    pub ha_enabled: bool,
    /// Host failures HA is configured to survive.
    #[serde(deserialize_with = "int")]
    pub ha_host_failures_to_tolerate: i64,
    /// Host failures the current HA plan survives.
    #[serde(deserialize_with = "int")]
    pub ha_plan_exists_for: i64,
    /// The pool can no longer survive `ha_host_failures_to_tolerate` failures.
    pub ha_overcommitted: bool,
    /// Reference of the default SR (`OpaqueRef:NULL` when none).
    #[serde(rename = "default_SR")]
    pub default_sr: String,
}

fn host_other_config<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| HOST_OTHER_CONFIG.contains(&k))
}

fn software_version<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| SOFTWARE_VERSION.contains(&k))
}

fn cpu_info<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| CPU_INFO.contains(&k))
}

fn os_version<'de, D: Deserializer<'de>>(d: D) -> Result<OsVersion, D::Error> {
    let mut map = pick(d, |k| OS_VERSION.contains(&k))?;
    let name = map.remove("name").unwrap_or_default();
    Ok(OsVersion {
        name: name.split('|').next().unwrap_or("").to_owned(),
        distro: map.remove("distro").unwrap_or_default(),
    })
}

fn pv_drivers_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let version = pick(d, |k| PV_DRIVERS_VERSION.contains(&k))?;
    let part = |k: &str| version.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let (Some(major), Some(minor), Some(micro)) = (part("major"), part("minor"), part("micro"))
    else {
        return Ok(String::new());
    };
    Ok(match part("build") {
        Some(build) => format!("{major}.{minor}.{micro}-{build}"),
        None => format!("{major}.{minor}.{micro}"),
    })
}

fn license_params<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| k == "expiry")
}

/// A set of strings (tags, enum values, references); `null` and non-string members are
/// skipped rather than failing the record.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let all = Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(all
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        })
        .collect())
}

/// Only the target keys: `device_config` also holds CHAP credentials, which must never be
/// kept, logged or exported.
fn pbd_device_config<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| {
        PBD_DEVICE_CONFIG.contains(&k) && !k.to_ascii_lowercase().contains("secret")
    })
}

fn pbd_other_config<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    pick(d, |k| k == "multipathed" || k.starts_with("mpath-"))
}

/// A string map reduced to the keys `keep` accepts, so that nothing else (secrets in
/// particular) is ever held. Non-string values are skipped rather than failing the record.
fn pick<'de, D: Deserializer<'de>>(
    d: D,
    keep: impl Fn(&str) -> bool,
) -> Result<HashMap<String, String>, D::Error> {
    let all = Option::<HashMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(all
        .into_iter()
        .filter(|(k, _)| keep(k))
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect())
}

/// One `event.from` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventBatch {
    /// Changes, oldest first, coalesced per object.
    pub events: Vec<Event>,
    /// Live objects per (lower-case) class, for every class.
    #[serde(deserialize_with = "int_map")]
    pub valid_ref_counts: HashMap<String, i64>,
    /// Where the next call continues.
    pub token: String,
}

/// One change of one object.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Lower-case class name (`vm`, `host`, ...).
    pub class: String,
    /// `add`, `mod` or `del`.
    pub operation: String,
    /// The object's reference.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The whole record after the change; absent for `del`. Kept raw and decoded by class.
    pub snapshot: Option<Box<serde_json::value::RawValue>>,
}

fn int_map<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, i64>, D::Error> {
    #[derive(Deserialize)]
    struct Int(#[serde(deserialize_with = "int")] i64);
    let map = Option::<HashMap<String, Int>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, Int(v))| (k, v)).collect())
}

/// Reads an int64 that XML-RPC-era tooling may have turned into a string.
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrText {
        Int(i64),
        Float(f64),
        Text(String),
        Null(()),
    }
    Ok(match IntOrText::deserialize(d)? {
        IntOrText::Int(i) => i,
        #[allow(clippy::cast_possible_truncation)]
        IntOrText::Float(f) => f as i64,
        IntOrText::Text(s) => s.trim().parse().unwrap_or(0),
        IntOrText::Null(()) => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_sizes_accept_numbers_and_strings() {
        let sr: Sr = serde_json::from_str(
            r#"{"uuid":"u","name_label":"n","type":"nfs","content_type":"user","physical_size":4294967296,"physical_utilisation":"1024","virtual_allocation":null,"other":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(sr.physical_size, 4294967296);
        assert_eq!(sr.physical_utilisation, 1024);
        assert_eq!(sr.virtual_allocation, 0);
        assert_eq!(sr.sr_type, "nfs");
    }
}

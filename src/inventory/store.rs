//! The raw record tables the inventory is derived from, keyed by object reference, and how an
//! `event.from` change is applied to them. Pure: no I/O.

use crate::config::Collectors;
use crate::xapi::records::{
    Certificate, Event, Host, HostMetrics, Message, Pbd, Pif, Pool, Records, Sr, Vbd, Vdi, Vm,
    VmGuestMetrics, VmMetrics,
};

/// The classes the inventory always follows, as `event.from` names them.
pub const CLASSES: &[&str] = &[
    "pool",
    "host",
    "host_metrics",
    "vm",
    "vm_metrics",
    "vm_guest_metrics",
    "sr",
    "pbd",
    "pif",
];

/// The same classes as the API spells them in `<class>.get_all_records`.
pub const RECORD_CLASSES: &[&str] = &[
    "pool",
    "host",
    "host_metrics",
    "VM",
    "VM_metrics",
    "VM_guest_metrics",
    "SR",
    "PBD",
    "PIF",
];

/// Classes followed only for a collector that needs them, as `event.from` names them and as
/// `<class>.get_all_records` spells them: a switched-off collector costs no reads and no
/// events.
pub const DISK_CLASSES: &[(&str, &str)] = &[("vbd", "VBD"), ("vdi", "VDI")];

/// The classes followed with `collectors`: as `event.from` names them, and those read with
/// `<class>.get_all_records` at a full read, as the API spells them. `message` is followed
/// but not read then: the first `event.from` after `event.inject` returns every message
/// (the token's message generation is 0, ocaml/xapi/xapi_event.ml).
pub fn followed(collectors: Collectors) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut events = CLASSES.to_vec();
    let mut records = RECORD_CLASSES.to_vec();
    if collectors.disks {
        events.extend(DISK_CLASSES.iter().map(|(e, _)| *e));
        records.extend(DISK_CLASSES.iter().map(|(_, r)| *r));
    }
    if collectors.messages {
        events.push("message");
    }
    if collectors.certificates {
        events.push("certificate");
        records.push("Certificate");
    }
    (events, records)
}

/// Every record of every followed class, reduced to the fields the exporter reads.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// `pool` (one).
    pub pools: Records<Pool>,
    /// `host`.
    pub hosts: Records<Host>,
    /// `host_metrics`.
    pub host_metrics: Records<HostMetrics>,
    /// `VM`, templates and snapshots included.
    pub vms: Records<Vm>,
    /// `VM_metrics`.
    pub vm_metrics: Records<VmMetrics>,
    /// `VM_guest_metrics`.
    pub vm_guest_metrics: Records<VmGuestMetrics>,
    /// `SR`.
    pub srs: Records<Sr>,
    /// `PBD`.
    pub pbds: Records<Pbd>,
    /// `PIF`.
    pub pifs: Records<Pif>,
    /// `VBD` of type `Disk`; empty unless the disks collector is on.
    pub vbds: Records<Vbd>,
    /// `VDI`; empty unless the disks collector is on.
    pub vdis: Records<Vdi>,
    /// `message`, without bodies; empty unless the messages collector is on.
    pub messages: Records<Message>,
    /// `Certificate`; empty unless the certificates collector is on.
    pub certificates: Records<Certificate>,
    /// Host reference → expiry (Unix seconds) of the certificate the host serves, as
    /// `host.get_server_certificate` gave it at the last full read, for hosts without a
    /// `host` certificate record. Not an XAPI class: events never change it.
    pub served_expiry: std::collections::HashMap<String, i64>,
    /// The unit each host data source declares, as `host.get_data_sources` gave it at the
    /// last full read; empty unless asked for. Not an XAPI class either.
    pub data_source_units: std::sync::Arc<DataSourceUnits>,
}

/// Data source name → the unit XAPI declares for it (`data_source.units`), over every host.
pub type DataSourceUnits = std::collections::BTreeMap<Box<str>, Box<str>>;

/// Why an event could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// `add`/`mod` without a snapshot, or one that does not decode as that class.
    #[error("malformed {class} snapshot for {reference}: {detail}")]
    Snapshot {
        /// Event class.
        class: String,
        /// Object reference.
        reference: String,
        /// Decoder message.
        detail: String,
    },
}

impl Store {
    /// Applies one change; returns whether anything the exporter reads changed, so that a
    /// flood of irrelevant updates (guest agents refresh their metrics every minute) does
    /// not rebuild the inventory. Classes the store does not follow are ignored.
    pub fn apply(&mut self, event: &Event) -> Result<bool, ApplyError> {
        match event.class.to_ascii_lowercase().as_str() {
            "pool" => apply_to(&mut self.pools, event),
            "host" => apply_to(&mut self.hosts, event),
            "host_metrics" => apply_to(&mut self.host_metrics, event),
            "vm" => apply_to(&mut self.vms, event),
            "vm_metrics" => apply_to(&mut self.vm_metrics, event),
            "vm_guest_metrics" => apply_to(&mut self.vm_guest_metrics, event),
            "sr" => apply_to(&mut self.srs, event),
            "pbd" => apply_to(&mut self.pbds, event),
            "pif" => apply_to(&mut self.pifs, event),
            "vbd" => {
                // Only disks are kept. A drive whose type changes (`VBD.set_type`) arrives
                // as a `mod` with its whole record, and goes or comes here.
                let had = self.vbds.contains_key(&event.reference);
                let changed = apply_to(&mut self.vbds, event)?;
                if self
                    .vbds
                    .get(&event.reference)
                    .is_some_and(|v| !v.is_disk())
                {
                    self.vbds.remove(&event.reference);
                    return Ok(had);
                }
                Ok(changed)
            }
            "vdi" => apply_to(&mut self.vdis, event),
            "message" => apply_to(&mut self.messages, event),
            "certificate" => apply_to(&mut self.certificates, event),
            _ => Ok(false),
        }
    }
}

fn apply_to<R>(table: &mut Records<R>, event: &Event) -> Result<bool, ApplyError>
where
    R: serde::de::DeserializeOwned + PartialEq,
{
    if event.operation == "del" {
        return Ok(table.remove(&event.reference).is_some());
    }
    let malformed = |detail: String| ApplyError::Snapshot {
        class: event.class.clone(),
        reference: event.reference.clone(),
        detail,
    };
    let raw = event
        .snapshot
        .as_ref()
        .ok_or_else(|| malformed(format!("{} event without snapshot", event.operation)))?;
    let record: R = serde_json::from_str(raw.get()).map_err(|e| malformed(e.to_string()))?;
    if table
        .get(&event.reference)
        .is_some_and(|old| **old == record)
    {
        return Ok(false);
    }
    table.insert(event.reference.clone(), Box::new(record));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_classes_are_the_followed_classes() {
        for collectors in [
            Collectors::default(),
            Collectors {
                disks: false,
                messages: false,
                certificates: false,
                ..Collectors::default()
            },
        ] {
            assert_eq!(
                followed(collectors).0.contains(&"message"),
                collectors.messages
            );
            assert_eq!(
                followed(collectors).0.contains(&"certificate"),
                collectors.certificates
            );
            let (events, records) = followed(collectors);
            let lower: Vec<String> = records.iter().map(|c| c.to_lowercase()).collect();
            let read: Vec<&str> = events.into_iter().filter(|c| *c != "message").collect();
            assert_eq!(lower, read);
            assert_eq!(read.contains(&"vbd"), collectors.disks);
        }
    }

    fn event(class: &str, operation: &str, reference: &str, snapshot: Option<&str>) -> Event {
        Event {
            class: class.into(),
            operation: operation.into(),
            reference: reference.into(),
            snapshot: snapshot.map(|s| serde_json::value::RawValue::from_string(s.into()).unwrap()),
        }
    }

    #[test]
    fn add_mod_del_and_irrelevant_changes() {
        let mut store = Store::default();
        let add = event(
            "VM",
            "add",
            "OpaqueRef:1",
            Some(r#"{"uuid":"u1","name_label":"web","power_state":"Running","other_config":{}}"#),
        );
        assert_eq!(store.apply(&add), Ok(true));
        assert_eq!(store.vms["OpaqueRef:1"].name_label, "web");
        // A field the exporter does not keep changed: nothing to rebuild.
        let same = event(
            "vm",
            "mod",
            "OpaqueRef:1",
            Some(
                r#"{"uuid":"u1","name_label":"web","power_state":"Running","name_description":"x"}"#,
            ),
        );
        assert_eq!(store.apply(&same), Ok(false));
        let renamed = event(
            "vm",
            "mod",
            "OpaqueRef:1",
            Some(r#"{"uuid":"u1","name_label":"db","power_state":"Running"}"#),
        );
        assert_eq!(store.apply(&renamed), Ok(true));
        assert_eq!(store.vms["OpaqueRef:1"].name_label, "db");
        assert_eq!(
            store.apply(&event("vm", "del", "OpaqueRef:1", None)),
            Ok(true)
        );
        assert!(store.vms.is_empty());
        assert_eq!(
            store.apply(&event("vm", "del", "OpaqueRef:1", None)),
            Ok(false)
        );
        assert_eq!(
            store.apply(&event("vif", "add", "OpaqueRef:m", Some("{}"))),
            Ok(false)
        );
    }

    #[test]
    fn a_bad_snapshot_is_an_error_not_a_panic() {
        let mut store = Store::default();
        assert!(
            store
                .apply(&event("sr", "add", "OpaqueRef:s", None))
                .is_err()
        );
        assert!(
            store
                .apply(&event("sr", "mod", "OpaqueRef:s", Some(r#"{"uuid": 5}"#)))
                .is_err()
        );
        assert!(store.srs.is_empty());
    }

    #[test]
    fn only_disk_vbds_are_kept_and_a_changed_type_comes_or_goes() {
        let mut store = Store::default();
        let vbd = |operation: &str, kind: &str| {
            let record = format!(r#"{{"VM":"OpaqueRef:v","VDI":"OpaqueRef:d","type":"{kind}"}}"#);
            event("vbd", operation, "OpaqueRef:b", Some(&record))
        };
        // A CD drive: nothing kept, nothing changed.
        assert_eq!(store.apply(&vbd("add", "CD")), Ok(false));
        assert!(store.vbds.is_empty());
        // Made a disk: it comes.
        assert_eq!(store.apply(&vbd("mod", "Disk")), Ok(true));
        assert!(store.vbds["OpaqueRef:b"].is_disk());
        assert_eq!(store.apply(&vbd("mod", "Disk")), Ok(false));
        // Made a CD drive again: it goes, and that is a change.
        assert_eq!(store.apply(&vbd("mod", "CD")), Ok(true));
        assert!(store.vbds.is_empty());
        assert_eq!(store.apply(&vbd("del", "CD")), Ok(false));
    }

    #[test]
    fn pbd_secrets_are_never_kept() {
        let mut store = Store::default();
        let add = event(
            "pbd",
            "add",
            "OpaqueRef:p",
            Some(
                r#"{"uuid":"p","host":"OpaqueRef:h","SR":"OpaqueRef:s","currently_attached":true,
                "device_config":{"target":"10.0.0.1","targetIQN":"iqn.x","port":"3260","SCSIid":"36a",
                "chapuser":"u","chappassword":"hunter2","chappassword_secret":"OpaqueRef:sec"},
                "other_config":{"multipathed":"true","mpath-36a":"[2, 4]","iscsi_sessions":"2"}}"#,
            ),
        );
        assert_eq!(store.apply(&add), Ok(true));
        let pbd = &store.pbds["OpaqueRef:p"];
        let debug = format!("{pbd:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("chap"),
            "{debug}"
        );
        assert_eq!(pbd.device_config["targetIQN"], "iqn.x");
        assert_eq!(pbd.other_config["mpath-36a"], "[2, 4]");
        assert!(!pbd.other_config.contains_key("iscsi_sessions"));
    }
}

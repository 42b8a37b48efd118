//! The XAPI records the exporter reads, reduced to the fields it uses. Lenient like the
//! official SDKs: integers may arrive as numbers or strings, and absent fields take defaults.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// A map of object reference (`OpaqueRef:…`) to record, as `*.get_all_records` returns.
pub type Records<R> = HashMap<String, R>;

/// `host` record fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Host {
    /// Host UUID (the `host:<uuid>` of its RRD legend).
    pub uuid: String,
    /// Display name.
    pub name_label: String,
    /// Management address other clients connect to (IP or name).
    pub address: String,
}

/// `VM` record fields.
#[derive(Debug, Clone, Default, Deserialize)]
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
}

/// `SR` record fields.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub physical_size: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub physical_utilisation: i64,
    /// Bytes.
    #[serde(deserialize_with = "int")]
    pub virtual_allocation: i64,
}

/// `pool` record fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Pool {
    /// Pool UUID.
    pub uuid: String,
    /// Display name (often empty).
    pub name_label: String,
    /// Reference of the master host.
    pub master: String,
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

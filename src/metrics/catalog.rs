//! The catalog: how each RRD data source name becomes a Prometheus family name, labels, help
//! text and type. The only place that knows raw RRD units. Pure string work, no I/O.
//! (Interface stub; the implementation lands with the catalog work.)

use std::borrow::Cow;

use super::Kind;

/// Which kind of object an RRD belongs to (the second field of a legend entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// `host:<uuid>`
    Host,
    /// `vm:<uuid>` (including dom0)
    Vm,
    /// `sr:<uuid>`
    Sr,
}

/// A reference to an SR found inside a host data source name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrRef<'a> {
    /// The first 8 hex characters of the SR UUID (`read_<sr8>`, `iops_total_<sr8>`, ...).
    Prefix(&'a str),
    /// A full SR UUID (`sr_<uuid>_cache_size`, ...).
    Full(&'a str),
}

/// The result of mapping one data source name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped<'a> {
    /// The full family name, e.g. `xen_vm_vbd_read`.
    pub family: Cow<'static, str>,
    /// The per-sample label carved out of the name (`cpu`, `pif`, `vbd`, `vif`, ...), if any.
    pub label: Option<(&'static str, &'a str)>,
    /// The SR this data source is about, if any; the caller resolves it to `sr`/`sr_uuid`.
    pub sr: Option<SrRef<'a>>,
}

/// Maps a data source name of an RRD owned by `owner` to its family.
pub fn map_data_source(owner: Owner, ds: &str) -> Mapped<'_> {
    let _ = (owner, ds);
    unimplemented!("catalog stub")
}

/// The help text and type of a family name produced by [`map_data_source`] or one of the
/// record-derived families.
pub fn describe(family: &str) -> (Cow<'static, str>, Kind) {
    let _ = family;
    unimplemented!("catalog stub")
}

//! The join of one host's `/rrd_updates` legend with names, as a [`SeriesMap`] kept between
//! scrapes. A steady pool sends the same legend every time and its names rarely change, so
//! after the first scrape a host's reply costs a legend comparison and a few hundred name
//! lookups instead of mapping and labelling every column again.
//!
//! A cached map is reused only when everything that went into it is unchanged: the legend
//! (compared byte for byte), the host's own name, the names of the SRs, and the name of every
//! host and VM it labelled (or their absence from the inventory), and the units the inventory
//! declared for the data sources the catalog does not know. The naming is the cache's own,
//! fixed when it is made: a pool's maps all have the pool's naming.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::config::Endpoint;
use crate::inventory::{HostEntry, Inventory, SrIndex};
use crate::metrics::catalog::{self, Naming, Owner, SrRef};
use crate::metrics::exposition::LayoutCache;
use crate::metrics::series::{Frame, SeriesMap, SeriesMapBuilder};
use crate::metrics::{Label, Tail};
use crate::xapi::rrd::{Legend, Row, RrdUpdates};

use super::HostSamples;
use super::uuids::Hasher;

/// A host not scraped for this long (removed from the pool, say) loses its map; checked
/// whenever a map is built.
const EVICT_AFTER: Duration = Duration::from_secs(600);

/// Series maps by host endpoint, and the layout of the last scrape's maps.
#[derive(Debug, Default)]
pub(super) struct MapCache {
    hosts: Mutex<FxHashMap<String, Slot>>,
    layouts: LayoutCache,
    /// How every map of this cache names its families.
    naming: Naming,
}

#[derive(Debug)]
struct Slot {
    map: Arc<HostMap>,
    used: Instant,
}

impl MapCache {
    /// An empty cache whose maps name their families by `naming`.
    pub(super) fn new(naming: Naming) -> MapCache {
        MapCache {
            naming,
            ..MapCache::default()
        }
    }

    pub(super) fn layouts(&self) -> &LayoutCache {
        &self.layouts
    }

    fn cached(&self, key: &str, now: Instant) -> Option<Arc<HostMap>> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.get_mut(key).map(|slot| {
            slot.used = now;
            slot.map.clone()
        })
    }

    /// The mapping of the reply `updates` from the host at `endpoint`: the cached one when
    /// still valid, a new one (then cached) otherwise.
    pub(super) fn map(
        &self,
        endpoint: &Endpoint,
        updates: &RrdUpdates<'_>,
        inventory: &Arc<Inventory>,
        srs: &SrIndex,
        known: Option<&HostEntry>,
        hash_key: Option<&[u8]>,
    ) -> Mapped {
        let key = endpoint.to_string();
        let now = Instant::now();
        // The map whose legend this reply has, if any.
        let same_legend = self
            .cached(&key, now)
            .filter(|map| map.legend.matches(&updates.legend));
        let host_uuid = match &same_legend {
            Some(map) => map.host_in_legend.clone(),
            None => host_in_legend(&updates.legend),
        };
        let host = HostOf::new(host_uuid.as_deref(), inventory, known);
        let Some(row) = &updates.newest else {
            return Mapped::without_rows(host);
        };
        if let Some(map) = &same_legend
            && map.is_valid_for(&host.entry, inventory, srs)
        {
            return Mapped::new(map.clone(), host, &row.values);
        }
        let map = Arc::new(HostMap::build(
            updates,
            &host.entry,
            inventory,
            srs,
            hash_key,
            self.naming,
        ));
        {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            hosts.retain(|_, slot| now.duration_since(slot.used) < EVICT_AFTER);
            hosts.insert(
                key,
                Slot {
                    map: map.clone(),
                    used: now,
                },
            );
        }
        Mapped::new(map, host, &row.values)
    }
}

/// The UUID of the first `host` entry of a legend.
fn host_in_legend(legend: &[Cow<'_, str>]) -> Option<Arc<str>> {
    legend
        .iter()
        .filter_map(|e| Legend::parse(e))
        .find(|l| l.owner == "host")
        .map(|l| Arc::from(l.uuid))
}

/// The host a reply comes from: the first `host` entry of its legend, else what the caller
/// knew, else nobody.
struct HostOf {
    entry: HostEntry,
    unknown: bool,
}

impl HostOf {
    fn new(uuid: Option<&str>, inventory: &Inventory, known: Option<&HostEntry>) -> HostOf {
        match uuid {
            Some(uuid) => match inventory.host(uuid) {
                Some(h) => HostOf {
                    entry: h.clone(),
                    unknown: false,
                },
                None => HostOf {
                    entry: HostEntry {
                        uuid: Arc::from(uuid),
                        name: Arc::from(uuid),
                        address: String::new(),
                    },
                    unknown: true,
                },
            },
            None => HostOf {
                entry: known.cloned().unwrap_or_else(|| HostEntry {
                    uuid: Arc::from(""),
                    name: Arc::from(""),
                    address: String::new(),
                }),
                unknown: false,
            },
        }
    }
}

/// A UUID's owner type, head and slot among the unknown owners.
type Resolved = (Owner, u32, Option<usize>);

/// A data source's family, tail and slot among the unresolved SR prefixes.
type Mapping = (u32, u32, Option<usize>);

/// A host's series map and what it depends on besides the legend.
#[derive(Debug)]
struct HostMap {
    legend: StoredLegend,
    /// The UUID of the legend's first `host` entry: the reply's host.
    host_in_legend: Option<Arc<str>>,
    series: Arc<SeriesMap>,
    host_name: Arc<str>,
    host_uuid: Arc<str>,
    /// The SRs' UUIDs and names: SR owners and tails name SRs, and a prefix resolves only
    /// while it is unique among all UUIDs.
    srs: Vec<(Arc<str>, Arc<str>)>,
    /// Hosts and VMs labelled, with the name used (`None`: unknown, named by UUID).
    owners: Vec<(Owner, Arc<str>, Option<Arc<str>>)>,
    /// The inventory the owners were last checked against; the same snapshot needs no check.
    checked: Mutex<Weak<Inventory>>,
    /// Unknown hosts and VMs, with their columns: one counts only while it has a value.
    unknown: Vec<(Arc<str>, Vec<u32>)>,
    /// SR prefixes that matched no SR, with their columns, likewise.
    unresolved: Vec<(Arc<str>, Vec<u32>)>,
    /// Host data sources the catalog does not know, with the unit the inventory declared for
    /// each when its family's help was written.
    declared: Vec<(Box<str>, Option<Box<str>>)>,
}

impl HostMap {
    /// Joins a legend with names; this is the mapping of every column, whatever its value in
    /// this reply, so that the map serves later replies too. With `hash_key` (XEN_HASH_UUIDS)
    /// the labels are hashed here, once per map, not at every scrape. A column of a family
    /// that `naming` leaves out yields no series.
    fn build(
        parsed: &RrdUpdates<'_>,
        host: &HostEntry,
        inventory: &Inventory,
        srs: &SrIndex,
        hash_key: Option<&[u8]>,
        naming: Naming,
    ) -> HostMap {
        let mut hasher = hash_key.map(Hasher::new);
        let host_head: Arc<[Label]> = Arc::from(vec![
            Label::new("host", host.name.clone()),
            Label::new("host_uuid", host.uuid.clone()),
        ]);
        let mut builder = SeriesMapBuilder::new(parsed.legend.len());
        let mut owners = Vec::new();
        let mut unknown: Vec<(Arc<str>, Vec<u32>)> = Vec::new();
        let mut unresolved: Vec<(Arc<str>, Vec<u32>)> = Vec::new();
        let mut declared = Vec::new();
        // Head index and unknown-owner slot by UUID, as the per-sample mapping always keyed
        // them; legends come grouped by owner, so the last one is almost always it.
        let mut heads: FxHashMap<&str, Resolved> = FxHashMap::default();
        let mut last: Option<(&str, Resolved)> = None;
        // Family, tail and unresolved-prefix slot by data source, so that the catalog is asked
        // once per distinct name instead of once per VM; `None` for a family left out.
        let mut mappings: FxHashMap<(Owner, &str), Option<Mapping>> = FxHashMap::default();
        for (column, entry) in parsed.legend.iter().enumerate() {
            let Some(legend) = Legend::parse(entry) else {
                continue;
            };
            // We ask for cf=AVERAGE; a host that ignores it would otherwise yield duplicates.
            if legend.cf != "AVERAGE" {
                continue;
            }
            let (owner, head, unknown_slot) = match last {
                Some((uuid, resolved)) if uuid == legend.uuid => resolved,
                _ => {
                    let resolved = match heads.get(legend.uuid) {
                        Some(&resolved) => resolved,
                        None => {
                            let Some((owner, labels, named)) =
                                owner_head(&legend, host, &host_head, inventory, srs)
                            else {
                                continue;
                            };
                            let labels = match &mut hasher {
                                Some(hasher) => hasher.relabel_head(labels),
                                None => labels,
                            };
                            let head = builder.head(labels);
                            let mut unknown_slot = None;
                            let uuid = || Arc::<str>::from(legend.uuid);
                            match named {
                                Named::Elsewhere => {}
                                Named::Found(name) => owners.push((owner, uuid(), Some(name))),
                                Named::Unknown => {
                                    unknown_slot = Some(unknown.len());
                                    unknown.push((uuid(), Vec::new()));
                                    owners.push((owner, uuid(), None));
                                }
                            }
                            let resolved = (owner, head, unknown_slot);
                            heads.insert(legend.uuid, resolved);
                            resolved
                        }
                    };
                    last = Some((legend.uuid, resolved));
                    resolved
                }
            };
            let mapping = *mappings.entry((owner, legend.name)).or_insert_with(|| {
                let mapped = catalog::map_data_source(owner, legend.name);
                let renamed = catalog::rename(naming, mapped.family)?;
                let family = builder.scaled_family(renamed.family, renamed.scale, |f| {
                    // The Prometheus naming says the unit XAPI declares for a host data
                    // source it does not know, since it cannot convert its value.
                    let unit = (naming == Naming::Prometheus
                        && owner == Owner::Host
                        && !catalog::knows(naming, f))
                    .then(|| {
                        let unit = inventory.data_source_unit(legend.name);
                        declared.push((Box::from(legend.name), unit.map(Box::from)));
                        unit
                    })
                    .flatten();
                    catalog::describe_as(naming, f, unit)
                });
                let mut tail = Vec::new();
                let mut unresolved_slot = None;
                if let Some(sr) = mapped.sr {
                    let (name, uuid): (Arc<str>, Arc<str>) = match sr {
                        SrRef::Prefix(prefix) => match srs.by_prefix(prefix) {
                            Some(s) => (s.name.clone(), s.uuid.clone()),
                            None => {
                                let p: Arc<str> = Arc::from(prefix);
                                unresolved_slot = Some(
                                    match unresolved.iter().position(|(u, _)| **u == *prefix) {
                                        Some(i) => i,
                                        None => {
                                            unresolved.push((p.clone(), Vec::new()));
                                            unresolved.len() - 1
                                        }
                                    },
                                );
                                (p.clone(), p)
                            }
                        },
                        SrRef::Full(uuid) => match srs.by_uuid(uuid) {
                            Some(s) => (s.name.clone(), s.uuid.clone()),
                            None => {
                                let u: Arc<str> = Arc::from(uuid);
                                (u.clone(), u)
                            }
                        },
                    };
                    tail.push(Label::new("sr", name));
                    tail.push(Label::new("sr_uuid", uuid));
                }
                if let Some((name, value)) = mapped.label {
                    tail.push(Label::new(name, value));
                }
                let tail = Tail::from(tail);
                let tail = match &mut hasher {
                    Some(hasher) => hasher.relabel_tail(tail),
                    None => tail,
                };
                Some((family, builder.tail(tail), unresolved_slot))
            });
            let Some((family, tail, unresolved_slot)) = mapping else {
                continue;
            };
            let column_u32 = u32::try_from(column).unwrap_or(u32::MAX);
            if let Some(slot) = unknown_slot {
                unknown[slot].1.push(column_u32);
            }
            if let Some(slot) = unresolved_slot {
                unresolved[slot].1.push(column_u32);
            }
            builder.set(column, family, head, tail);
        }
        HostMap {
            legend: StoredLegend::new(&parsed.legend),
            host_in_legend: host_in_legend(&parsed.legend),
            series: Arc::new(builder.finish()),
            host_name: host.name.clone(),
            host_uuid: host.uuid.clone(),
            srs: sr_names(srs),
            owners,
            checked: Mutex::new(Weak::new()),
            unknown,
            unresolved,
            declared,
        }
    }

    /// Whether the names the map used are still those of `inventory` and `srs`.
    fn is_valid_for(&self, host: &HostEntry, inventory: &Arc<Inventory>, srs: &SrIndex) -> bool {
        if *self.host_name != *host.name
            || *self.host_uuid != *host.uuid
            || !same_srs(&self.srs, srs)
        {
            return false;
        }
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if std::ptr::eq(checked.as_ptr(), Arc::as_ptr(inventory)) {
            return true;
        }
        let same_units = self
            .declared
            .iter()
            .all(|(ds, unit)| inventory.data_source_unit(ds) == unit.as_deref());
        let same = same_units
            && self.owners.iter().all(|(owner, uuid, name)| {
                let now = match owner {
                    Owner::Vm => inventory.vm(uuid).map(|v| &v.name),
                    _ => inventory.host(uuid).map(|h| &h.name),
                };
                match (name, now) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
                    (None, None) => true,
                    _ => false,
                }
            });
        if same {
            *checked = Arc::downgrade(inventory);
        }
        same
    }
}

fn sr_names(srs: &SrIndex) -> Vec<(Arc<str>, Arc<str>)> {
    srs.srs
        .iter()
        .map(|s| (s.uuid.clone(), s.name.clone()))
        .collect()
}

fn same_srs(names: &[(Arc<str>, Arc<str>)], srs: &SrIndex) -> bool {
    names.len() == srs.srs.len()
        && names
            .iter()
            .zip(&srs.srs)
            .all(|((uuid, name), s)| **uuid == *s.uuid && **name == *s.name)
}

/// The legend a map was built from, for a byte-exact comparison with the next reply's. Kept
/// front-coded: consecutive entries mostly differ only after their owner's UUID
/// (`AVERAGE:vm:<uuid>:cpu0`, `AVERAGE:vm:<uuid>:cpu1`), so each entry is stored as the length
/// it shares with the one before and the bytes that follow, a fraction of the legend's size
/// for every host the exporter keeps a map of.
#[derive(Debug)]
struct StoredLegend {
    /// Per entry: bytes shared with the previous entry, and the end of its own bytes in `rest`.
    entries: Vec<(u16, u32)>,
    rest: Vec<u8>,
}

impl StoredLegend {
    fn new(legend: &[Cow<'_, str>]) -> StoredLegend {
        let mut entries = Vec::with_capacity(legend.len());
        let mut rest = Vec::new();
        let mut previous: &[u8] = &[];
        for entry in legend {
            let entry = entry.as_bytes();
            let shared = entry
                .iter()
                .zip(previous)
                .take(usize::from(u16::MAX))
                .take_while(|(a, b)| a == b)
                .count();
            rest.extend_from_slice(&entry[shared..]);
            let shared = u16::try_from(shared).unwrap_or(u16::MAX);
            entries.push((shared, u32::try_from(rest.len()).unwrap_or(u32::MAX)));
            previous = entry;
        }
        rest.shrink_to_fit();
        StoredLegend { entries, rest }
    }

    fn matches(&self, legend: &[Cow<'_, str>]) -> bool {
        if legend.len() != self.entries.len() {
            return false;
        }
        // While every entry so far matched, the previous entry of `legend` is the stored one.
        let mut previous: &[u8] = &[];
        let mut own = 0;
        for (entry, &(shared, end)) in legend.iter().zip(&self.entries) {
            let (entry, shared, end) = (entry.as_bytes(), usize::from(shared), end as usize);
            let same = entry
                .get(..shared)
                .is_some_and(|p| previous.get(..shared) == Some(p))
                && entry.get(shared..) == self.rest.get(own..end);
            if !same {
                return false;
            }
            (previous, own) = (entry, end);
        }
        true
    }
}

/// One reply joined with names, before its values move into a frame.
#[derive(Debug)]
pub(super) struct Mapped {
    map: Option<Arc<HostMap>>,
    /// The host the reply comes from.
    pub(super) host: HostEntry,
    /// Hosts and VMs with a value in this reply but missing from the inventory.
    pub(super) unknown_owners: Vec<String>,
    /// SR prefixes with a value in this reply that matched no SR.
    pub(super) unresolved: Vec<String>,
}

impl Mapped {
    fn without_rows(host: HostOf) -> Mapped {
        Mapped {
            map: None,
            unknown_owners: if host.unknown {
                vec![host.entry.uuid.to_string()]
            } else {
                Vec::new()
            },
            host: host.entry,
            unresolved: Vec::new(),
        }
    }

    fn new(map: Arc<HostMap>, host: HostOf, values: &[f64]) -> Mapped {
        let has_value = |columns: &[u32]| {
            columns
                .iter()
                .position(|&c| values.get(c as usize).is_some_and(|v| !v.is_nan()))
        };
        // Those with a value, in the order the per-sample mapping meets them: by first value.
        let present = |list: &[(Arc<str>, Vec<u32>)]| -> Vec<String> {
            let mut found: Vec<(u32, &Arc<str>)> = list
                .iter()
                .filter_map(|(name, columns)| has_value(columns).map(|i| (columns[i], name)))
                .collect();
            found.sort_unstable_by_key(|&(column, _)| column);
            found
                .into_iter()
                .map(|(_, name)| name.to_string())
                .collect()
        };
        let mut mapped = Mapped::without_rows(host);
        mapped.unknown_owners.extend(present(&map.unknown));
        mapped.unresolved = present(&map.unresolved);
        mapped.map = Some(map);
        mapped
    }

    /// This reply's newest `row` as a frame of its map.
    pub(super) fn into_frame(self, row: Option<Row>) -> HostSamples {
        let frame = self
            .map
            .zip(row)
            .map(|(map, row)| Frame::new(map.series.clone(), &row.values));
        HostSamples {
            host: self.host,
            frame,
            unresolved: self.unresolved,
        }
    }
}

/// Joins one reply with names without any cache.
#[cfg(test)]
fn map_rrd(
    parsed: &RrdUpdates<'_>,
    inventory: &Inventory,
    srs: &SrIndex,
    known: Option<&HostEntry>,
) -> Mapped {
    let uuid = host_in_legend(&parsed.legend);
    let host = HostOf::new(uuid.as_deref(), inventory, known);
    let Some(row) = &parsed.newest else {
        return Mapped::without_rows(host);
    };
    let map = Arc::new(HostMap::build(
        parsed,
        &host.entry,
        inventory,
        srs,
        None,
        Naming::Compatible,
    ));
    Mapped::new(map, host, &row.values)
}

/// Where the name in an owner's labels comes from.
enum Named {
    /// The reply's own host or an SR, which a cached map checks as a whole.
    Elsewhere,
    /// The inventory's host or VM of that name.
    Found(Arc<str>),
    /// Missing from the inventory: named by its UUID.
    Unknown,
}

impl Named {
    fn of(name: Option<&Arc<str>>) -> Named {
        name.map_or(Named::Unknown, |n| Named::Found(n.clone()))
    }
}

/// The name and UUID of an inventory record, or the legend's UUID for both when there is none.
fn name_or_uuid(found: Option<(&Arc<str>, &Arc<str>)>, uuid: &str) -> (Arc<str>, Arc<str>) {
    match found {
        Some((name, uuid)) => (name.clone(), uuid.clone()),
        None => (Arc::from(uuid), Arc::from(uuid)),
    }
}

/// The head labels of the RRD owner named by `legend` and where their name comes from; `None`
/// for an owner type we do not export. A cached map is checked against exactly what this
/// reads, so whatever else it starts reading must be added to [`HostMap::is_valid_for`].
fn owner_head(
    legend: &Legend<'_>,
    host: &HostEntry,
    host_head: &Arc<[Label]>,
    inventory: &Inventory,
    srs: &SrIndex,
) -> Option<(Owner, Arc<[Label]>, Named)> {
    Some(match legend.owner {
        "host" if *legend.uuid == *host.uuid => (Owner::Host, host_head.clone(), Named::Elsewhere),
        "host" => {
            let found = inventory.host(legend.uuid);
            let (name, uuid) = name_or_uuid(found.map(|h| (&h.name, &h.uuid)), legend.uuid);
            (
                Owner::Host,
                Arc::from(vec![
                    Label::new("host", name),
                    Label::new("host_uuid", uuid),
                ]),
                Named::of(found.map(|h| &h.name)),
            )
        }
        "vm" => {
            // An unknown VM (e.g. migrated in from another pool) is named by its UUID, as
            // the original exporter did.
            let found = inventory.vm(legend.uuid);
            let (name, uuid) = name_or_uuid(found.map(|v| (&v.name, &v.uuid)), legend.uuid);
            (
                Owner::Vm,
                Arc::from(vec![
                    Label::new("vm", name),
                    Label::new("vm_uuid", uuid),
                    Label::new("host", host.name.clone()),
                    Label::new("host_uuid", host.uuid.clone()),
                ]),
                Named::of(found.map(|v| &v.name)),
            )
        }
        "sr" => {
            let (name, uuid) = match srs.by_uuid(legend.uuid) {
                Some(s) => (s.name.clone(), s.uuid.clone()),
                None => (Arc::from(legend.uuid), Arc::from(legend.uuid)),
            };
            (
                Owner::Sr,
                Arc::from(vec![Label::new("sr", name), Label::new("sr_uuid", uuid)]),
                Named::Elsewhere,
            )
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::metrics::encode::Format;
    use crate::metrics::exposition::{Cursor, Exposition};
    use crate::metrics::{FamiliesBuilder, Labels, Sample};
    use crate::xapi::records::{self, Records};
    use crate::xapi::rrd;

    const HOST1: &[u8] = include_bytes!("../../tests/fixtures/rrd/rrd_updates.host1.formatC.json");
    const HOST2: &[u8] = include_bytes!("../../tests/fixtures/rrd/rrd_updates.host2.formatC.json");

    /// What a scrape does with the reply `updates` of the host at `endpoint`.
    fn via_cache(
        cache: &MapCache,
        endpoint: &Endpoint,
        updates: &RrdUpdates<'_>,
        inventory: &Arc<Inventory>,
        srs: &SrIndex,
        known: Option<&HostEntry>,
    ) -> Mapped {
        cache.map(endpoint, updates, inventory, srs, known, None)
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    fn uuids(parsed: &RrdUpdates<'_>, owner: &str) -> Vec<String> {
        let mut found: Vec<String> = parsed
            .legend
            .iter()
            .filter_map(|e| Legend::parse(e))
            .filter(|l| l.owner == owner)
            .map(|l| l.uuid.to_string())
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// SR records for the prefixes of `bodies`: all but the first resolve, the second twice
    /// (ambiguous, so it does not resolve either).
    fn sr_records(bodies: &[RrdUpdates<'_>]) -> Records<records::Sr> {
        let mut prefixes: Vec<String> = bodies
            .iter()
            .flat_map(|b| b.legend.iter())
            .filter_map(|e| e.rsplit_once('_').map(|(_, p)| p.to_string()))
            .filter(|p| p.len() == 8 && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let mut srs = Records::new();
        for (i, prefix) in prefixes.iter().enumerate().skip(1) {
            for copy in 0..if i == 1 { 2 } else { 1 } {
                let uuid = format!("{prefix}-1111-4000-8000-00000000000{copy}");
                srs.insert(
                    uuid.clone(),
                    Box::new(records::Sr {
                        uuid,
                        name_label: format!("SR \"{i}\"\\{copy}"),
                        ..Default::default()
                    }),
                );
            }
        }
        srs
    }

    /// An inventory naming the hosts and VMs of `bodies`, but for every `skip`-th VM, with
    /// names that need escaping and a name shared by two VMs.
    fn inventory(bodies: &[RrdUpdates<'_>], skip: usize, rename: Option<&str>) -> Inventory {
        let mut hosts = Records::new();
        let mut vms = Records::new();
        for body in bodies {
            for uuid in uuids(body, "host") {
                hosts.insert(
                    uuid.clone(),
                    Box::new(records::Host {
                        name_label: format!("xcp-ng-{}", &uuid[..4]),
                        uuid,
                        ..Default::default()
                    }),
                );
            }
            for (i, uuid) in uuids(body, "vm").into_iter().enumerate() {
                if skip > 0 && i % skip == 0 {
                    continue;
                }
                let name = match (i, rename) {
                    (1, Some(name)) => name.to_string(),
                    (2 | 3, _) => "twin \"vm\"\n".to_string(),
                    _ => format!("vm-{i}\\{}", &uuid[..4]),
                };
                vms.insert(
                    uuid.clone(),
                    Box::new(records::Vm {
                        uuid,
                        name_label: name,
                        ..Default::default()
                    }),
                );
            }
        }
        Inventory::new(Records::new(), hosts, vms, sr_records(bodies))
    }

    fn endpoint(host: &str) -> Endpoint {
        Endpoint::parse(&format!("https://{host}")).unwrap()
    }

    fn host_up(host: &str) -> Vec<crate::metrics::Family> {
        let mut out = FamiliesBuilder::new();
        out.push(
            "xen_host_up".into(),
            catalog::describe,
            Sample {
                labels: Labels::head(Arc::from(vec![Label::new("host", host)])),
                value: 1.0,
            },
        );
        out.finish().0
    }

    /// Every body mapped through `cache` as the host `h<i>`, as frames.
    fn frames(
        cache: &MapCache,
        bodies: &[RrdUpdates<'_>],
        inventory: &Arc<Inventory>,
    ) -> Vec<Frame> {
        bodies
            .iter()
            .enumerate()
            .filter_map(|(i, parsed)| {
                via_cache(
                    cache,
                    &endpoint(&format!("h{i}")),
                    parsed,
                    inventory,
                    &inventory.srs,
                    None,
                )
                .into_frame(parsed.newest.clone())
                .frame
            })
            .collect()
    }

    /// The text of a collection of `bodies` mapped through `cache`, checked to be the same
    /// whole and in chunks, and the number of duplicate series left out.
    fn exposition(
        bodies: &[RrdUpdates<'_>],
        inventory: &Arc<Inventory>,
        cache: &MapCache,
        format: Format,
    ) -> (String, usize) {
        let frames = frames(cache, bodies, inventory);
        let (exposition, dropped) = Exposition::new(host_up("a"), frames, cache.layouts());
        let mut text = Vec::new();
        exposition.encode(format, &mut text);
        // As the server streams it: chunks that end wherever a line crosses the limit.
        let mut cursor = Cursor::default();
        let mut chunked = Vec::new();
        loop {
            let mut chunk = Vec::new();
            let done = exposition.encode_some(&mut cursor, format, &mut chunk, 700);
            chunked.extend_from_slice(&chunk);
            if done {
                break;
            }
        }
        assert!(chunked == text, "chunked encoding differs");
        (String::from_utf8(text).unwrap(), dropped)
    }

    fn fixtures() -> Vec<RrdUpdates<'static>> {
        vec![rrd::parse(HOST1).unwrap(), rrd::parse(HOST2).unwrap()]
    }

    /// Legend entries that are skipped or treated specially, appended to a body.
    fn oddities(parsed: &mut RrdUpdates<'_>) {
        let host = uuids(parsed, "host")[0].clone();
        let vm = uuids(parsed, "vm")[0].clone();
        for entry in [
            format!("MAX:host:{host}:cpu0"),
            format!("AVERAGE:pool:{host}:cpu0"),
            "no colons".to_string(),
            format!("AVERAGE:vm:{vm}:cpu0"),
            format!("AVERAGE:vm:{vm}:memory"),
            "AVERAGE:vm:6f0e3a1c-0000-4000-8000-000000000000:cpu0".to_string(),
            "AVERAGE:sr:aaaaaaaa-0000-4000-8000-000000000000:size".to_string(),
            format!("AVERAGE:host:{host}:sr_aaaaaaaa-0000-4000-8000-000000000000_cache_size"),
            format!("AVERAGE:host:{host}:weird name-ÄÖ"),
        ] {
            parsed.legend.push(Cow::Owned(entry));
        }
        let width = parsed.legend.len();
        if let Some(row) = &mut parsed.newest {
            row.values.resize(width, 7.5);
        }
    }

    /// A cached map and layout must give exactly what fresh ones give, scrape after scrape,
    /// whatever values come and go.
    #[test]
    fn reused_maps_give_the_text_of_fresh_ones() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..24 {
            let mut bodies = fixtures();
            if case % 3 == 1 {
                // The same host twice: every series is a duplicate, the first with a value wins.
                bodies[1] = rrd::parse(HOST1).unwrap();
            }
            if case % 4 == 2 {
                bodies.truncate(1);
            }
            for body in &mut bodies {
                if case % 2 == 1 {
                    oddities(body);
                }
            }
            let inventory = Arc::new(match case % 3 {
                0 => inventory(&bodies, 0, None),
                1 => inventory(&bodies, 3, None),
                _ => Inventory::default(),
            });
            let cache = MapCache::default();
            // Several scrapes through one cache: the first builds, the others reuse, each with
            // its own missing values (none, a few, most, whole families).
            for scrape in 0..4 {
                let percent = [0, 3, 60, 100][(case + scrape) % 4];
                let family_gone = rng.next() % 40;
                for body in &mut bodies {
                    let names: Vec<String> = body.legend.iter().map(|e| e.to_string()).collect();
                    let row = body.newest.get_or_insert_with(Row::default);
                    row.values.resize(names.len(), 1.0);
                    for (value, name) in row.values.iter_mut().zip(&names) {
                        let gone = rng.chance(percent)
                            || (name.len() as u64 % 40 == family_gone && name.contains("cpu"));
                        *value = if gone {
                            f64::NAN
                        } else {
                            (rng.next() % 10_000) as f64 / 8.0
                        };
                    }
                }
                for format in [Format::Text, Format::OpenMetrics] {
                    let cached = exposition(&bodies, &inventory, &cache, format);
                    let fresh = exposition(&bodies, &inventory, &MapCache::default(), format);
                    assert!(
                        cached == fresh,
                        "case {case}, scrape {scrape}, {format:?}: the cached maps differ"
                    );
                    if case % 3 == 1 && bodies.len() == 2 && percent < 100 {
                        assert!(cached.1 > 0, "the same host twice leaves duplicates out");
                    }
                }
            }
        }
    }

    #[test]
    fn a_family_of_the_exporter_named_like_a_data_source_wins() {
        let bodies = fixtures();
        let inventory = Arc::new(inventory(&bodies, 0, None));
        let cache = MapCache::default();
        let frames = frames(&cache, &bodies, &inventory);
        let mut own = FamiliesBuilder::new();
        own.push(
            "xen_host_memory_total_kib".into(),
            catalog::describe,
            Sample {
                labels: Labels::none(),
                value: -1.0,
            },
        );
        let (exposition, _) = Exposition::new(own.finish().0, frames, cache.layouts());
        // The record families, written first, skipped in the collection.
        let mut cursor = Cursor::skipping([Cow::Borrowed("xen_vm_cpu")]);
        let mut text = Vec::new();
        while !exposition.encode_some(&mut cursor, Format::Text, &mut text, usize::MAX) {}
        let text = String::from_utf8(text).unwrap();
        let lines = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(lines("# TYPE xen_host_memory_total_kib "), 1, "{text}");
        assert_eq!(lines("xen_host_memory_total_kib"), 1);
        assert!(text.contains("\nxen_host_memory_total_kib -1\n"));
        assert_eq!(lines("xen_vm_cpu{"), 0);
        assert!(lines("xen_vm_memory{") > 0);
    }

    fn map_of(
        cache: &MapCache,
        parsed: &RrdUpdates<'_>,
        inventory: &Arc<Inventory>,
    ) -> Arc<HostMap> {
        via_cache(
            cache,
            &endpoint("h"),
            parsed,
            inventory,
            &inventory.srs,
            None,
        )
        .map
        .unwrap()
    }

    #[test]
    fn a_map_is_reused_while_legend_and_names_stay_the_same() {
        let bodies = fixtures();
        let inventory = Arc::new(inventory(&bodies, 0, None));
        let cache = MapCache::default();
        let first = map_of(&cache, &bodies[0], &inventory);
        assert!(Arc::ptr_eq(&first, &map_of(&cache, &bodies[0], &inventory)));
        // A new snapshot with the same names, as every SR read makes, is no reason to rebuild.
        let same_names = Arc::new(inventory.with_srs(Arc::new(SrIndex::new(
            sr_records(&bodies).values().map(|s| &**s),
        ))));
        assert!(Arc::ptr_eq(
            &first,
            &map_of(&cache, &bodies[0], &same_names)
        ));
        // Other values, same legend.
        let mut other = rrd::parse(HOST1).unwrap();
        if let Some(row) = &mut other.newest {
            row.values.iter_mut().for_each(|v| *v = f64::NAN);
        }
        assert!(Arc::ptr_eq(&first, &map_of(&cache, &other, &inventory)));
        // Another host's reply with the same legend gets a map of its own.
        let elsewhere = via_cache(
            &cache,
            &endpoint("other"),
            &bodies[0],
            &inventory,
            &inventory.srs,
            None,
        );
        assert!(!Arc::ptr_eq(&first, &elsewhere.map.unwrap()));
    }

    #[test]
    fn a_changed_legend_rebuilds_the_map() {
        let bodies = fixtures();
        let inventory = Arc::new(inventory(&bodies, 0, None));
        let cache = MapCache::default();
        let first = map_of(&cache, &bodies[0], &inventory);
        let mut changed = rrd::parse(HOST1).unwrap();
        let last = changed.legend.len() - 1;
        changed.legend[last] = Cow::Owned(format!("{}x", changed.legend[last]));
        let second = map_of(&cache, &changed, &inventory);
        assert!(!Arc::ptr_eq(&first, &second));
        let mut shorter = rrd::parse(HOST1).unwrap();
        shorter.legend.pop();
        if let Some(row) = &mut shorter.newest {
            row.values.pop();
        }
        let third = map_of(&cache, &shorter, &inventory);
        assert!(!Arc::ptr_eq(&second, &third));
        assert_eq!(third.series.columns(), shorter.legend.len());
    }

    #[test]
    fn a_stored_legend_matches_exactly_its_own_entries() {
        let entries = |list: &[&'static str]| -> Vec<Cow<'static, str>> {
            list.iter().map(|e| Cow::Borrowed(*e)).collect()
        };
        let legend = entries(&[
            "AVERAGE:vm:aaaa:cpu0",
            "AVERAGE:vm:aaaa:cpu1",
            "AVERAGE:vm:aaab:cpu1",
            "AVERAGE:vm:aaab",
            "",
            "AVERAGE:host:x:memory",
        ]);
        let stored = StoredLegend::new(&legend);
        assert!(stored.matches(&legend));
        for other in [
            &["AVERAGE:vm:aaaa:cpu0", "AVERAGE:vm:aaaa:cpu1"][..],
            &[
                "AVERAGE:vm:aaaa:cpu0",
                "AVERAGE:vm:aaaa:cpu1",
                "AVERAGE:vm:aaac:cpu1",
                "AVERAGE:vm:aaab",
                "",
                "AVERAGE:host:x:memory",
            ],
            &[
                "AVERAGE:vm:aaaa:cpu0",
                "AVERAGE:vm:aaaa:cpu1",
                "AVERAGE:vm:aaab:cpu1",
                "AVERAGE:vm:aaab:",
                "",
                "AVERAGE:host:x:memory",
            ],
            &[
                "AVERAGE:vm:aaaa:cpu0",
                "AVERAGE:vm:aaaa:cpu1",
                "AVERAGE:vm:aaab:cpu1",
                "AVERAGE:vm:aaab",
                "A",
                "AVERAGE:host:x:memory",
            ],
            &[
                "MAX:vm:aaaa:cpu0",
                "AVERAGE:vm:aaaa:cpu1",
                "AVERAGE:vm:aaab:cpu1",
                "AVERAGE:vm:aaab",
                "",
                "AVERAGE:host:x:memory",
            ],
        ] {
            assert!(!stored.matches(&entries(other)), "{other:?}");
        }
        assert!(stored.rest.len() < legend.iter().map(|e| e.len()).sum::<usize>());
    }

    fn text_of(map: &HostMap, values: &[f64], cache: &MapCache) -> String {
        let frame = Frame::new(map.series.clone(), values);
        let mut text = Vec::new();
        Exposition::new(Vec::new(), vec![frame], cache.layouts())
            .0
            .encode(Format::Text, &mut text);
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn a_renamed_vm_or_sr_or_a_newly_known_vm_rebuilds_the_map() {
        let bodies = fixtures();
        let inventory = Arc::new(inventory(&bodies, 0, None));
        let cache = MapCache::default();
        let first = map_of(&cache, &bodies[0], &inventory);

        let renamed = Arc::new(self::inventory(&bodies, 0, Some("renamed")));
        let second = map_of(&cache, &bodies[0], &renamed);
        assert!(!Arc::ptr_eq(&first, &second));
        let values = &bodies[0].newest.as_ref().unwrap().values;
        assert!(text_of(&second, values, &cache).contains("vm=\"renamed\""));

        let mut srs = sr_records(&bodies);
        srs.values_mut().next().unwrap().name_label = "renamed SR".into();
        let sr_renamed =
            Arc::new(renamed.with_srs(Arc::new(SrIndex::new(srs.values().map(|s| &**s)))));
        let third = map_of(&cache, &bodies[0], &sr_renamed);
        assert!(!Arc::ptr_eq(&second, &third));

        let partial = Arc::new(self::inventory(&bodies, 2, None));
        let unknown = via_cache(
            &cache,
            &endpoint("h"),
            &bodies[0],
            &partial,
            &partial.srs,
            None,
        );
        assert!(!unknown.unknown_owners.is_empty());
        let fourth = unknown.map.unwrap();
        assert!(Arc::ptr_eq(&fourth, &map_of(&cache, &bodies[0], &partial)));
        assert!(!Arc::ptr_eq(
            &fourth,
            &map_of(&cache, &bodies[0], &inventory)
        ));
    }

    #[test]
    fn missing_values_write_no_line_and_a_family_without_any_writes_no_header() {
        let mut parsed = rrd::parse(HOST1).unwrap();
        let inventory = Arc::new(inventory(std::slice::from_ref(&parsed), 0, None));
        let cache = MapCache::default();
        let names: Vec<String> = parsed.legend.iter().map(|e| e.to_string()).collect();
        let row = parsed.newest.as_mut().unwrap();
        for (value, name) in row.values.iter_mut().zip(&names) {
            if name.ends_with(":memory_free_kib") || name.ends_with(":cpu0") {
                *value = f64::NAN;
            }
        }
        let map = map_of(&cache, &parsed, &inventory);
        let text = text_of(&map, &parsed.newest.as_ref().unwrap().values, &cache);
        assert!(!text.contains("xen_host_memory_free_kib"), "{text}");
        assert!(text.contains("# TYPE xen_host_memory_total_kib gauge\n"));
        let cpu = |n: &str| {
            text.lines()
                .any(|l| l.starts_with("xen_vm_cpu{") && l.contains(&format!("cpu=\"{n}\"")))
        };
        assert!(!cpu("0"));
        assert!(cpu("1"));
    }

    #[test]
    fn the_layout_is_reused_for_the_same_maps_in_the_same_order() {
        let bodies = fixtures();
        let inventory = Arc::new(inventory(&bodies, 0, None));
        let cache = MapCache::default();
        let maps: Vec<Arc<SeriesMap>> = frames(&cache, &bodies, &inventory)
            .iter()
            .map(|f| f.map().clone())
            .collect();
        let layout = cache.layouts().get(&maps);
        assert!(Arc::ptr_eq(&layout, &cache.layouts().get(&maps)));
        let reversed: Vec<_> = maps.iter().rev().cloned().collect();
        assert!(!Arc::ptr_eq(&layout, &cache.layouts().get(&reversed)));
    }

    #[test]
    fn an_unknown_sr_prefix_keeps_the_prefix_as_sr_uuid_and_is_reported() {
        let parsed = rrd::parse(HOST1).unwrap();
        let inventory = Inventory::default();
        let mapped = map_rrd(&parsed, &inventory, &SrIndex::default(), None);
        assert_eq!(mapped.unresolved.len(), 3, "{:?}", mapped.unresolved);
        assert!(
            !mapped.unknown_owners.is_empty(),
            "the host and its VMs are unknown too"
        );
        let frame = mapped.into_frame(parsed.newest).frame.unwrap();
        let (exposition, dropped) = Exposition::new(Vec::new(), vec![frame], &LayoutCache::new());
        assert_eq!(dropped, 0, "prefixes keep the SRs' series apart");
        let mut text = Vec::new();
        exposition.encode(Format::Text, &mut text);
        let text = String::from_utf8(text).unwrap();
        let sr_uuids: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("xen_host_read{"))
            .filter_map(|l| l.split("sr_uuid=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(sr_uuids.len(), 3);
        assert!(sr_uuids.iter().all(|u| u.len() == 8), "{sr_uuids:?}");
    }

    #[test]
    fn an_empty_reply_is_no_samples_not_an_error() {
        let body = br#"{"meta":{"start":"1740534010","step":"5","end":"1740533965","rows":"0","columns":"1","legend":["AVERAGE:host:0844f276-6eef-4658-a5a6-6d0bd5ed740a:cpu_avg"]},"data":[]}"#;
        let parsed = rrd::parse(body).unwrap();
        let mapped = map_rrd(&parsed, &Inventory::default(), &SrIndex::default(), None);
        assert_eq!(&*mapped.host.uuid, "0844f276-6eef-4658-a5a6-6d0bd5ed740a");
        assert_eq!(mapped.unknown_owners.len(), 1);
        assert!(mapped.into_frame(None).frame.is_none());
    }

    #[test]
    fn a_prometheus_cache_renames_converts_and_leaves_out() {
        let parsed = rrd::parse(HOST1).unwrap();
        let inventory = Arc::new(inventory(std::slice::from_ref(&parsed), 0, None));
        let value_of = |ds: &str| {
            let column = parsed
                .legend
                .iter()
                .position(|e| e.starts_with("AVERAGE:host:") && e.ends_with(&format!(":{ds}")))
                .unwrap();
            parsed.newest.as_ref().unwrap().values[column]
        };
        let text = |naming| {
            let cache = MapCache::new(naming);
            exposition(
                std::slice::from_ref(&parsed),
                &inventory,
                &cache,
                Format::Text,
            )
            .0
        };
        let (compatible, prometheus) = (text(Naming::Compatible), text(Naming::Prometheus));
        let line = |text: &str, family: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{family}{{")))
                .unwrap_or_else(|| panic!("no {family}"));
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        let free = value_of("memory_free_kib");
        assert_eq!(line(&compatible, "xen_host_memory_free_kib"), free);
        assert_eq!(
            line(&prometheus, "xen_host_memory_free_bytes"),
            free * 1024.0
        );
        assert!(prometheus.contains("# TYPE xen_host_memory_free_bytes gauge\n"));
        assert!(prometheus.contains("(× 1024)"));
        assert!(compatible.contains("xen_host_memory_total_kib{"));
        // Names only: the help texts name the data sources.
        let names: Vec<&str> = prometheus
            .lines()
            .filter(|l| !l.starts_with("# HELP"))
            .collect();
        assert!(
            !names.iter().any(|l| l.contains("memory_total")),
            "left out"
        );
        assert!(!names.iter().any(|l| l.contains("_kib")));
        let freq = value_of("CPU0-avg-freq");
        assert!(prometheus.contains(&format!(
            "xen_host_cpu_avg_freq_hertz{{host=\"xcp-ng-{}\",host_uuid=",
            &uuids(&parsed, "host")[0][..4]
        )));
        assert!(freq > 0.0);
        // Every other column is still there, under its Prometheus name.
        let samples = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples(&prometheus), samples(&compatible) - 1);
    }

    #[test]
    fn a_prometheus_map_says_the_declared_unit_and_is_rebuilt_when_it_changes() {
        let mut parsed = rrd::parse(HOST1).unwrap();
        let host = uuids(&parsed, "host")[0].clone();
        parsed
            .legend
            .push(Cow::Owned(format!("AVERAGE:host:{host}:new-plugin_power")));
        let width = parsed.legend.len();
        parsed.newest.as_mut().unwrap().values.resize(width, 42.0);
        let values = parsed.newest.as_ref().unwrap().values.clone();
        let base = inventory(std::slice::from_ref(&parsed), 0, None);
        let with = |unit| Arc::new(base.with_data_source_units([("new-plugin_power", unit)]));
        let cache = MapCache::new(Naming::Prometheus);
        let first = map_of(&cache, &parsed, &with("W"));
        let text = text_of(&first, &values, &cache);
        assert!(text.contains("in \"W\", the unit XAPI declares"), "{text}");
        assert!(
            text.contains("\nxen_host_new_plugin_power{"),
            "name kept, value unconverted"
        );
        assert!(text.contains("} 42\n"));
        // A new snapshot that declares the same: the map stays.
        assert!(Arc::ptr_eq(&first, &map_of(&cache, &parsed, &with("W"))));
        // Another unit: a new map, and help.
        let second = map_of(&cache, &parsed, &with("kW"));
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(text_of(&second, &values, &cache).contains("in \"kW\""));
        // Known families never look their unit up.
        assert_eq!(second.declared.len(), 1);
    }
}

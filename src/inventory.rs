//! The pool's inventory: host, VM and SR names and identities, held between scrapes so that a
//! scrape resolves a UUID with a map lookup instead of an API call. Loaded once from
//! `get_all_records`; an unknown UUID triggers one refresh (shared by everyone who needs it,
//! and rate-limited), never a call per UUID.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::xapi::{self, Client, records};

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
    /// Bytes.
    pub physical_size: i64,
    /// Bytes.
    pub physical_utilisation: i64,
    /// Bytes.
    pub virtual_allocation: i64,
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
    pub fn new(records: records::Records<records::Sr>) -> SrIndex {
        let mut srs: Vec<SrEntry> = records
            .into_values()
            .filter(|r| !r.uuid.is_empty())
            .map(|r| SrEntry {
                uuid: Arc::from(r.uuid),
                name: Arc::from(r.name_label),
                sr_type: Arc::from(r.sr_type),
                content_type: Arc::from(r.content_type),
                physical_size: r.physical_size,
                physical_utilisation: r.physical_utilisation,
                virtual_allocation: r.virtual_allocation,
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

/// One consistent view of the pool's names.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Hosts sorted by name, then UUID.
    pub hosts: Vec<HostEntry>,
    hosts_by_uuid: HashMap<Arc<str>, usize>,
    vms_by_uuid: HashMap<Arc<str>, VmEntry>,
    /// UUID of the pool master.
    pub master_uuid: Option<Arc<str>>,
    /// SRs (names and capacity as of the last SR read).
    pub srs: Arc<SrIndex>,
}

impl Inventory {
    /// Builds an inventory from records.
    pub fn new(
        pools: records::Records<records::Pool>,
        hosts: records::Records<records::Host>,
        vms: records::Records<records::Vm>,
        srs: records::Records<records::Sr>,
    ) -> Inventory {
        let master_ref = pools.into_values().next().map(|p| p.master);
        let master_uuid = master_ref
            .as_ref()
            .and_then(|r| hosts.get(r))
            .map(|h| Arc::from(h.uuid.as_str()));
        let mut host_list: Vec<HostEntry> = hosts
            .into_values()
            .filter(|h| !h.uuid.is_empty())
            .map(|h| HostEntry {
                uuid: Arc::from(h.uuid),
                name: Arc::from(h.name_label),
                address: h.address,
            })
            .collect();
        host_list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uuid.cmp(&b.uuid)));
        let hosts_by_uuid = host_list
            .iter()
            .enumerate()
            .map(|(i, h)| (h.uuid.clone(), i))
            .collect();
        // Templates and snapshots have no RRD; leaving them out keeps the map small.
        let vms_by_uuid = vms
            .into_values()
            .filter(|v| !v.is_a_template && !v.is_a_snapshot && !v.uuid.is_empty())
            .map(|v| {
                let uuid: Arc<str> = Arc::from(v.uuid);
                (
                    uuid.clone(),
                    VmEntry {
                        uuid,
                        name: Arc::from(v.name_label),
                    },
                )
            })
            .collect();
        Inventory {
            hosts: host_list,
            hosts_by_uuid,
            vms_by_uuid,
            master_uuid,
            srs: Arc::new(SrIndex::new(srs)),
        }
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

    /// A copy with a new SR index.
    pub fn with_srs(&self, srs: Arc<SrIndex>) -> Inventory {
        Inventory {
            srs,
            ..self.clone()
        }
    }
}

/// Reads every record class the inventory needs.
pub async fn load(client: &Client) -> Result<Inventory, xapi::Error> {
    let (pools, hosts, vms, srs) = tokio::try_join!(
        client.all_records::<records::Pool>("pool"),
        client.all_records::<records::Host>("host"),
        client.all_records::<records::Vm>("VM"),
        client.all_records::<records::Sr>("SR"),
    )?;
    Ok(Inventory::new(pools, hosts, vms, srs))
}

/// The inventory shared by scrapes: a current snapshot plus single-flight refreshes when a
/// scrape meets UUIDs it does not know.
#[derive(Debug)]
pub struct Cache {
    client: Arc<Client>,
    current: RwLock<Option<Arc<Inventory>>>,
    refresh: tokio::sync::Mutex<()>,
    /// UUIDs a reload did not resolve (a VM that migrated in from another pool), and when:
    /// they do not trigger another reload until `retry_after` has passed.
    unresolvable: Mutex<HashMap<String, Instant>>,
    retry_after: Duration,
}

impl Cache {
    /// An empty cache; nothing is read until [`Cache::get`] or [`Cache::refresh_for_unknown`].
    /// A UUID that a reload could not resolve triggers the next reload only after
    /// `retry_after`.
    pub fn new(client: Arc<Client>, retry_after: Duration) -> Cache {
        Cache {
            client,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            unresolvable: Mutex::new(HashMap::new()),
            retry_after,
        }
    }

    /// The current snapshot, if one was ever loaded.
    pub fn snapshot(&self) -> Option<Arc<Inventory>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current snapshot, loading it first if there is none.
    pub async fn get(&self) -> Result<Arc<Inventory>, xapi::Error> {
        if let Some(current) = self.snapshot() {
            return Ok(current);
        }
        let _guard = self.refresh.lock().await;
        if let Some(current) = self.snapshot() {
            return Ok(current);
        }
        self.reload().await
    }

    /// Reloads because a scrape met host or VM UUIDs (`unknown`) missing from its snapshot.
    /// Concurrent callers share one reload; UUIDs that the last reload could not resolve are
    /// ignored for `retry_after`, so that a VM that never resolves cannot make every scrape
    /// reload, while a VM created a second ago is named at once.
    pub async fn refresh_for_unknown(
        &self,
        unknown: &[String],
    ) -> Result<Arc<Inventory>, xapi::Error> {
        let _guard = self.refresh.lock().await;
        let current = match self.snapshot() {
            Some(current) => current,
            None => return self.reload().await,
        };
        let missing: Vec<&String> = {
            let unresolvable = self.unresolvable.lock().unwrap_or_else(|e| e.into_inner());
            unknown
                .iter()
                .filter(|u| current.vm(u).is_none() && current.host(u).is_none())
                .filter(|u| {
                    unresolvable
                        .get(u.as_str())
                        .is_none_or(|at| at.elapsed() >= self.retry_after)
                })
                .collect()
        };
        if missing.is_empty() {
            return Ok(current);
        }
        let fresh = self.reload().await?;
        let mut unresolvable = self.unresolvable.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for uuid in missing {
            if fresh.vm(uuid).is_none() && fresh.host(uuid).is_none() {
                unresolvable.insert(uuid.clone(), now);
            } else {
                unresolvable.remove(uuid.as_str());
            }
        }
        Ok(fresh)
    }

    /// Reads every record class; callers hold `refresh`.
    async fn reload(&self) -> Result<Arc<Inventory>, xapi::Error> {
        let inventory = Arc::new(load(&self.client).await?);
        tracing::debug!(
            hosts = inventory.hosts.len(),
            vms = inventory.vm_count(),
            srs = inventory.srs.srs.len(),
            "Inventory loaded"
        );
        self.store(inventory.clone());
        Ok(inventory)
    }

    fn store(&self, inventory: Arc<Inventory>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(inventory);
    }

    /// Replaces the SR part of the snapshot with a fresh read (done by every scrape).
    pub fn update_srs(&self, srs: Arc<SrIndex>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(inventory) = current.as_ref() {
            *current = Some(Arc::new(inventory.with_srs(srs)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        records.insert("a".into(), sr("aaaaaaaa-1111-4000-8000-000000000001"));
        records.insert("b".into(), sr("bbbbbbbb-1111-4000-8000-000000000001"));
        records.insert("c".into(), sr("bbbbbbbb-2222-4000-8000-000000000002"));
        let index = SrIndex::new(records);
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
            records::Vm {
                uuid: "t".into(),
                is_a_template: true,
                ..Default::default()
            },
        );
        vms.insert(
            "2".into(),
            records::Vm {
                uuid: "v".into(),
                name_label: "web".into(),
                ..Default::default()
            },
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

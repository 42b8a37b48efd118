//! One scrape of one pool: fetch `/rrd_updates` from every target host concurrently under a
//! deadline, read SR records, join rows with the inventory's names and turn everything into
//! metric families. The only module that knows both XAPI and Prometheus. Failures become
//! samples (`xen_host_up` 0, error counters) and one log line; a scrape never fails.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Shared, join_all};
use tokio::time::{Instant, timeout_at};

use crate::config::{Endpoint, Mode, PoolConfig};
use crate::inventory::{self, HostEntry, Inventory, SrIndex};
use crate::metrics::catalog;
use crate::metrics::exposition::Exposition;
use crate::metrics::{FamiliesBuilder, Family, Label, Labels, Sample};
use crate::xapi::rrd;
use crate::xapi::{self, Client, records};

mod rrd_map;

/// A UUID that an inventory reload could not resolve triggers another reload only after this.
const UNRESOLVABLE_RETRY: Duration = Duration::from_secs(600);

/// A pool being exported: its client (and session), inventory and error counters.
#[derive(Debug)]
pub struct Pool {
    client: Arc<Client>,
    inventory: inventory::Cache,
    mode: Mode,
    halt_on_no_uuid: bool,
    timeout: Duration,
    host_errors: Mutex<BTreeMap<HostErrorKey, u64>>,
    collector_errors: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Host mode: the identity of the configured host, learned from its own RRD.
    identity: Mutex<Option<HostEntry>>,
    /// Each host's legend joined with names, kept while neither changes.
    maps: rrd_map::MapCache,
}

/// A host to fetch, with what the inventory knows of it.
#[derive(Debug, Clone)]
struct Target {
    endpoint: Endpoint,
    known: Option<HostEntry>,
}

/// What mapping one host's reply produced.
#[derive(Debug)]
struct HostSamples {
    host: HostEntry,
    families: FamiliesBuilder,
    /// SR prefixes that matched no SR (their series keep the prefix as `sr_uuid`).
    unresolved: Vec<String>,
}

/// Why a host produced no samples this scrape.
#[derive(Debug)]
struct HostFailure {
    reason: &'static str,
    message: String,
}

impl From<xapi::Error> for HostFailure {
    fn from(error: xapi::Error) -> Self {
        HostFailure {
            reason: error.reason(),
            message: error.to_string(),
        }
    }
}

type SrResult = Result<Arc<SrIndex>, xapi::Error>;

/// Host name, host UUID and reason of a failed host collection.
type HostErrorKey = (Arc<str>, Arc<str>, &'static str);

impl Pool {
    /// A pool from its configuration; no network traffic yet.
    pub fn new(config: &PoolConfig) -> Result<Pool, String> {
        let client = Arc::new(Client::new(config)?);
        Ok(Pool {
            inventory: inventory::Cache::new(client.clone(), UNRESOLVABLE_RETRY),
            client,
            mode: config.mode,
            halt_on_no_uuid: config.halt_on_no_uuid,
            timeout: config.timeout,
            host_errors: Mutex::new(BTreeMap::new()),
            collector_errors: Mutex::new(BTreeMap::new()),
            identity: Mutex::new(None),
            maps: rrd_map::MapCache::default(),
        })
    }

    /// Ready once a login has succeeded.
    pub fn is_ready(&self) -> bool {
        self.client.has_logged_in()
    }

    /// Logs in and loads the inventory, so that the first scrape is as fast as the others.
    pub async fn warm_up(&self) -> Result<(), xapi::Error> {
        self.inventory.get().await.map(|_| ())
    }

    /// Ends the XAPI session.
    pub async fn shutdown(&self) {
        self.client.logout().await;
    }

    fn count_collector_error(&self, source: &'static str, error: &xapi::Error) {
        tracing::warn!(source, reason = error.reason(), %error, "Collection step failed");
        *self
            .collector_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((source, error.reason()))
            .or_default() += 1;
    }

    /// Runs one collection and returns its exposition: families sorted and free of
    /// duplicates, the hosts' rows still rows.
    pub async fn scrape(self: &Arc<Self>) -> Exposition {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let inventory = match timeout_at(deadline, self.inventory.get()).await {
            Ok(Ok(inventory)) => Some(inventory),
            Ok(Err(error)) => {
                self.count_collector_error("inventory", &error);
                None
            }
            Err(_) => {
                self.count_collector_error("inventory", &xapi::Error::Timeout(self.timeout));
                None
            }
        };
        let targets = self.targets(inventory.as_deref());

        let client = self.client.clone();
        let sr_read: Shared<_> = async move {
            match timeout_at(deadline, client.all_records::<records::Sr>("SR")).await {
                Ok(Ok(records)) => Ok(Arc::new(SrIndex::new(records))),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(xapi::Error::Timeout(deadline - started)),
            }
        }
        .boxed()
        .shared();

        // One task per host, so that parsing and mapping of the bodies that have arrived run
        // on every core while the others are still downloading.
        let hosts = join_all(targets.into_iter().map(|target| {
            let sr_read = sr_read.clone();
            let inventory = inventory.clone();
            let pool = self.clone();
            let task_target = target.clone();
            let task = tokio::spawn(async move {
                pool.collect_host(&task_target, deadline, sr_read, inventory)
                    .await
            });
            async move {
                let begun = Instant::now();
                let result = task.await.unwrap_or_else(|error| {
                    Err(HostFailure {
                        reason: "internal",
                        message: error.to_string(),
                    })
                });
                (target, result, begun.elapsed())
            }
        }));
        let (hosts, srs) = tokio::join!(hosts, sr_read);
        let fetched = started.elapsed();

        let mut out = FamiliesBuilder::new();
        match &srs {
            Ok(index) => {
                self.inventory.update_srs(index.clone());
                push_sr_families(&mut out, index);
            }
            Err(error) => self.count_collector_error("sr_records", error),
        }
        let mut parts = Vec::with_capacity(hosts.len());
        for (target, result, elapsed) in hosts {
            self.push_host(&mut out, &mut parts, &target, result, elapsed);
        }
        out.merge(parts);
        self.push_error_counters(&mut out);
        out.push(
            "xen_exporter_build_info".into(),
            catalog::describe,
            Sample {
                labels: Labels::head(Arc::from(vec![Label::new(
                    "version",
                    env!("CARGO_PKG_VERSION"),
                )])),
                value: 1.0,
            },
        );
        out.push(
            "xen_collector_duration_seconds".into(),
            catalog::describe,
            Sample {
                labels: Labels::none(),
                value: started.elapsed().as_secs_f64(),
            },
        );
        let (families, dropped) = out.finish_exposition(self.maps.layouts());
        tracing::debug!(
            fetched_and_mapped = ?fetched,
            total = ?started.elapsed(),
            families = families.family_count(),
            dropped_duplicates = dropped,
            "Collection done"
        );
        families
    }

    fn targets(&self, inventory: Option<&Inventory>) -> Vec<Target> {
        match self.mode {
            Mode::Pool => inventory
                .map(|inv| {
                    inv.hosts
                        .iter()
                        .map(|h| Target {
                            endpoint: self.client.member(&h.address),
                            known: Some(h.clone()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Mode::Host => {
                let endpoint = self.client.endpoint().clone();
                let remembered = self
                    .identity
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let known = remembered.or_else(|| {
                    let inv = inventory?;
                    inv.host_by_address(&endpoint.host).cloned().or_else(|| {
                        // XEN_HOST=localhost in dom0 names no address; if no redirect happened
                        // the configured host is the master.
                        (self.client.master() == endpoint)
                            .then(|| inv.master_uuid.as_ref().and_then(|u| inv.host(u)).cloned())
                            .flatten()
                    })
                });
                vec![Target { endpoint, known }]
            }
        }
    }

    async fn collect_host(
        &self,
        target: &Target,
        deadline: Instant,
        sr_read: Shared<futures::future::BoxFuture<'static, SrResult>>,
        inventory: Option<Arc<Inventory>>,
    ) -> Result<HostSamples, HostFailure> {
        let body = self.client.rrd_updates(&target.endpoint, deadline).await?;
        let mut parsed = self
            .maps
            .parse(&target.endpoint, &body)
            .map_err(|e| HostFailure {
                reason: "parse",
                message: e.to_string(),
            })?;
        let mut inventory = match inventory {
            Some(inventory) => inventory,
            None => timeout_at(deadline, self.inventory.get())
                .await
                .map_err(|_| HostFailure::from(xapi::Error::Timeout(self.timeout)))??,
        };
        let srs = match sr_read.await {
            Ok(index) => index,
            Err(_) => inventory.srs.clone(),
        };
        let map = |inventory: &Arc<Inventory>| {
            self.maps.map(
                &target.endpoint,
                &parsed,
                inventory,
                &srs,
                target.known.as_ref(),
            )
        };
        let mut mapped = map(&inventory);
        if !mapped.unknown_owners.is_empty() {
            // A VM created or migrated in since the inventory was read: reload once (shared
            // with the other hosts of this scrape) and map again with the new names.
            match timeout_at(
                deadline,
                self.inventory.refresh_for_unknown(&mapped.unknown_owners),
            )
            .await
            {
                Ok(Ok(fresh)) if !Arc::ptr_eq(&fresh, &inventory) => {
                    inventory = fresh;
                    mapped = map(&inventory);
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(error)) => self.count_collector_error("inventory", &error),
            }
        }
        let samples = mapped.into_samples(parsed.updates.newest.take());
        let unresolved = &samples.unresolved;
        if self.halt_on_no_uuid && !unresolved.is_empty() {
            return Err(HostFailure {
                reason: "unknown_sr",
                message: format!(
                    "no SR found for UUID prefix {} (HALT_ON_NO_UUID=true)",
                    unresolved.join(", ")
                ),
            });
        }
        if self.mode == Mode::Host {
            *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = Some(samples.host.clone());
        }
        Ok(samples)
    }

    fn push_host(
        &self,
        out: &mut FamiliesBuilder,
        parts: &mut Vec<FamiliesBuilder>,
        target: &Target,
        result: Result<HostSamples, HostFailure>,
        elapsed: Duration,
    ) {
        let (host, up) = match result {
            Ok(HostSamples { host, families, .. }) => {
                parts.push(families);
                (host, 1.0)
            }
            Err(failure) => {
                let host = target.known.clone().unwrap_or_else(|| HostEntry {
                    uuid: Arc::from(""),
                    name: Arc::from(target.endpoint.host.as_str()),
                    address: target.endpoint.host.clone(),
                });
                tracing::warn!(
                    host = %host.name,
                    host_uuid = %host.uuid,
                    endpoint = %target.endpoint,
                    reason = failure.reason,
                    error = %failure.message,
                    "Host collection failed"
                );
                *self
                    .host_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((host.name.clone(), host.uuid.clone(), failure.reason))
                    .or_default() += 1;
                (host, 0.0)
            }
        };
        let head: Arc<[Label]> = Arc::from(vec![
            Label::new("host", host.name.clone()),
            Label::new("host_uuid", host.uuid.clone()),
        ]);
        out.push(
            "xen_host_up".into(),
            catalog::describe,
            Sample {
                labels: Labels::head(head.clone()),
                value: up,
            },
        );
        out.push(
            "xen_host_scrape_duration_seconds".into(),
            catalog::describe,
            Sample {
                labels: Labels::head(head),
                value: elapsed.as_secs_f64(),
            },
        );
    }

    fn push_error_counters(&self, out: &mut FamiliesBuilder) {
        let host_errors = self
            .host_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((name, uuid, reason), count) in host_errors {
            out.push(
                "xen_host_scrape_errors_total".into(),
                catalog::describe,
                Sample {
                    labels: Labels::head(Arc::from(vec![
                        Label::new("host", name),
                        Label::new("host_uuid", uuid),
                        Label::new("reason", reason),
                    ])),
                    value: count as f64,
                },
            );
        }
        let collector_errors = self
            .collector_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((source, reason), count) in collector_errors {
            out.push(
                "xen_collector_errors_total".into(),
                catalog::describe,
                Sample {
                    labels: Labels::head(Arc::from(vec![
                        Label::new("source", source),
                        Label::new("reason", reason),
                    ])),
                    value: count as f64,
                },
            );
        }
    }
}

fn push_sr_families(out: &mut FamiliesBuilder, index: &SrIndex) {
    for sr in &index.srs {
        // The original exporter's label order; kept so diffs against it stay readable.
        let head: Arc<[Label]> = Arc::from(vec![
            Label::new("sr_uuid", sr.uuid.clone()),
            Label::new("sr", sr.name.clone()),
            Label::new("type", sr.sr_type.clone()),
            Label::new("content_type", sr.content_type.clone()),
        ]);
        for (name, value) in [
            ("xen_sr_physical_size", sr.physical_size),
            ("xen_sr_physical_utilization", sr.physical_utilisation),
            ("xen_sr_virtual_allocation", sr.virtual_allocation),
        ] {
            out.push(
                Cow::Borrowed(name),
                catalog::describe,
                Sample {
                    labels: Labels::head(head.clone()),
                    #[allow(clippy::cast_precision_loss)]
                    value: value as f64,
                },
            );
        }
    }
}

/// The families one collection would produce from already-fetched `/rrd_updates` bodies and
/// an inventory, without any network: the whole join and mapping of a scrape, minus the
/// exporter's own health families. Used to compare output with the original exporter's on
/// captured bodies, and by benchmarks. A body that does not parse is skipped.
pub fn families_from_bodies(bodies: &[&[u8]], inventory: &Inventory) -> Vec<Family> {
    let mut out = FamiliesBuilder::new();
    push_sr_families(&mut out, &inventory.srs);
    let mut parts = Vec::with_capacity(bodies.len());
    for body in bodies {
        let Ok(parsed) = rrd::parse(body) else {
            continue;
        };
        let mapped = rrd_map::map_rrd(&parsed, inventory, &inventory.srs, None);
        parts.push(mapped.into_samples(parsed.newest).families);
    }
    out.merge(parts);
    out.finish().0
}

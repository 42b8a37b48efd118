//! One scrape of one pool: fetch `/rrd_updates` from every target host concurrently under a
//! deadline, join rows with the live inventory's names through cached series maps
//! (`rrd_map`) and turn everything into an exposition; and the families derived from records
//! (`state`), rendered once per inventory snapshot for responses to write first. The only
//! module that knows both XAPI and Prometheus. Failures become samples (`xen_host_up` 0,
//! error counters) and one log line; a scrape never fails. The only XAPI calls a scrape makes
//! are the `/rrd_updates` requests. What the last collection found of each host is kept for
//! the status page ([`Pool::status`]), which reads it and never collects.

mod rrd_map;
mod state;
mod uuids;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{self, Collectors, Endpoint, Mode, PoolConfig, Scheme, SecretBytes, TrustMode};
use crate::inventory::live::{EVENT_WAIT, Live};
use crate::inventory::{HostEntry, Inventory, SrIndex};
use crate::metrics::catalog::{self, Naming};
use crate::metrics::encode::Format;
use crate::metrics::exposition::{Exposition, Rendered};
use crate::metrics::series::Frame;
use crate::metrics::{FamiliesBuilder, Label, Labels, Sample};
use crate::xapi::rrd;
use crate::xapi::{self, Client};

/// A pool being exported: its client (and session), live inventory and error counters.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    client: Arc<Client>,
    inventory: Live,
    /// The inventory task, once started.
    follower: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Shared by every pool of the process: caps concurrent `/rrd_updates` fetches.
    fetch_limit: Option<Arc<Semaphore>>,
    /// Unix time of the last collection that reached every host.
    last_success: Mutex<Option<f64>>,
    /// The last completed collection: its time and each host's outcome.
    last_collection: Mutex<Option<Arc<LastCollection>>>,
    /// The record-derived families of the last inventory snapshot, rendered in the formats
    /// asked for: they change only with the inventory, so a steady pool renders them once,
    /// not at every scrape.
    state_families: Mutex<Option<StateCache>>,
    collectors: Collectors,
    mode: Mode,
    halt_on_no_uuid: bool,
    timeout: Duration,
    host_errors: Mutex<BTreeMap<HostErrorKey, u64>>,
    /// Host mode: the identity of the configured host, learned from its own RRD.
    identity: Mutex<Option<HostEntry>>,
    /// How XAPI's certificates are checked, for `xen_exporter_xapi_tls_verify`.
    trust_mode: TrustMode,
    /// The configured host is plain HTTP: no certificate is checked whatever the trust mode.
    plain_http: bool,
    /// XEN_HASH_UUIDS: the key `*_uuid` label values are hashed with.
    hash_uuids_key: Option<SecretBytes>,
    /// Each host's legend joined with names, kept while neither changes.
    maps: rrd_map::MapCache,
    /// How the pool's families are named and in which units.
    naming: Naming,
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
    /// The newest row, unless the reply had none.
    frame: Option<Frame>,
    /// SR prefixes that matched no SR (their series keep the prefix as `sr_uuid`).
    unresolved: Vec<String>,
}

/// Why a host produced no samples this scrape.
#[derive(Debug)]
struct HostFailure {
    reason: HostReason,
    message: String,
}

impl From<xapi::Error> for HostFailure {
    fn from(error: xapi::Error) -> Self {
        HostFailure {
            reason: HostReason::Xapi(error.reason()),
            message: error.to_string(),
        }
    }
}

/// Why a host produced no samples: the `reason` of `xen_host_scrape_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostReason {
    /// The `/rrd_updates` request failed, or its body did not parse (`parse`).
    Xapi(xapi::Reason),
    /// An SR prefix matched no SR, with `HALT_ON_NO_UUID=true`.
    UnknownSr,
    /// The exporter's own fault: a host task that panicked, a closed semaphore.
    Internal,
}

impl HostReason {
    /// Every reason.
    pub fn all() -> impl Iterator<Item = HostReason> {
        xapi::Reason::ALL
            .into_iter()
            .map(HostReason::Xapi)
            .chain([HostReason::UnknownSr, HostReason::Internal])
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HostReason::Xapi(reason) => reason.as_str(),
            HostReason::UnknownSr => "unknown_sr",
            HostReason::Internal => "internal",
        }
    }
}

/// A pool as the status page shows it: what its last collection left, read without
/// collecting.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    /// The pool's configured name (its `/probe` target).
    pub name: Arc<str>,
    /// Host or pool mode.
    pub mode: Mode,
    /// How the hosts' certificates are checked.
    pub trust_mode: TrustMode,
    /// The configured host is plain HTTP, so no certificate is checked at all.
    pub plain_http: bool,
    /// The last completed collection; `None` before the first (not started).
    pub last: Option<Arc<LastCollection>>,
}

/// One completed collection.
#[derive(Debug, Clone, PartialEq)]
pub struct LastCollection {
    /// When it started.
    pub started: SystemTime,
    /// How long it took (`xen_pool_collection_duration_seconds`).
    pub took: Duration,
    /// Each host asked, in the order of the scrape's targets.
    pub hosts: Vec<HostOutcome>,
}

/// Whether a host answered a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct HostOutcome {
    /// Its name as in `xen_host_up` (its address when the inventory does not know it).
    pub name: Arc<str>,
    /// Its UUID as in `xen_host_up`: hashed with `XEN_HASH_UUIDS`, empty when unknown.
    pub uuid: Arc<str>,
    /// Where its `/rrd_updates` was asked for.
    pub address: String,
    /// `None` when it answered; else why not, the `reason` of `xen_host_scrape_errors_total`.
    pub failure: Option<HostReason>,
}

/// An inventory snapshot and its record-derived families in each format (text, OpenMetrics).
type StateCache = (Arc<Inventory>, [Option<Arc<Rendered>>; 2]);

/// Where [`StateCache`] keeps the families rendered in `format`.
fn slot_of(format: Format) -> usize {
    match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
    }
}

/// Host name, host UUID and reason of a failed host collection.
type HostErrorKey = (Arc<str>, Arc<str>, HostReason);

impl Pool {
    /// A pool from its configuration; no network traffic yet. `/rrd_updates` fetches are
    /// capped by `fetch_limit`, a semaphore shared with the other pools, so that many large
    /// pools scraped at once cannot exhaust sockets or memory.
    pub fn new(config: &PoolConfig, fetch_limit: Option<Arc<Semaphore>>) -> Result<Pool, String> {
        let client = Arc::new(Client::new(config)?);
        Ok(Pool {
            name: Arc::from(config.name.as_str()),
            inventory: Live::new(client.clone(), EVENT_WAIT, config.collectors)
                .reading_units(config.naming == config::Naming::Prometheus),
            follower: Mutex::new(None),
            fetch_limit,
            last_success: Mutex::new(None),
            last_collection: Mutex::new(None),
            state_families: Mutex::new(None),
            collectors: config.collectors,
            client,
            mode: config.mode,
            halt_on_no_uuid: config.halt_on_no_uuid,
            timeout: config.timeout,
            host_errors: Mutex::new(BTreeMap::new()),
            identity: Mutex::new(None),
            trust_mode: config.tls.mode(),
            plain_http: config.endpoint.scheme == Scheme::Http,
            hash_uuids_key: config.hash_uuids_key.clone(),
            maps: rrd_map::MapCache::new(naming(config.naming)),
            naming: naming(config.naming),
        })
    }

    /// Ready once a login has succeeded.
    pub fn is_ready(&self) -> bool {
        self.client.has_logged_in()
    }

    /// The pool's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the status page shows: the state the last collection left. Starts nothing.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            name: self.name.clone(),
            mode: self.mode,
            trust_mode: self.trust_mode,
            plain_http: self.plain_http,
            last: self
                .last_collection
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Starts, once, the task that logs in, reads the inventory and keeps it current by
    /// following XAPI's events; [`Pool::shutdown`] stops it.
    pub fn start(self: &Arc<Self>) {
        let mut follower = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        if follower.is_none() {
            let pool = self.clone();
            *follower = Some(tokio::spawn(async move { pool.inventory.run().await }));
        }
    }

    /// Stops the inventory task and ends the XAPI session.
    pub async fn shutdown(&self) {
        let follower = self
            .follower
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = follower {
            task.abort();
        }
        self.client.logout().await;
    }

    /// Runs one collection within `timeout` (the pool's own timeout when `None` or longer)
    /// and returns its exposition: families sorted and free of duplicates, the hosts' rows
    /// still rows.
    pub async fn scrape(self: &Arc<Self>, timeout: Option<Duration>) -> Exposition {
        self.start();
        let started = Instant::now();
        let started_at = SystemTime::now();
        let deadline = self.deadline(timeout);
        let inventory = self.inventory.get(deadline).await;
        if inventory.is_none() {
            // The inventory task logs and counts why (source "inventory").
            tracing::debug!("No inventory yet: scraping without names");
        }
        let targets = self.targets(inventory.as_deref());

        // One task per host, so that parsing and mapping of the bodies that have arrived run
        // on every core while the others are still downloading.
        let hosts = join_all(targets.into_iter().map(|target| {
            let inventory = inventory.clone();
            let pool = self.clone();
            let task_target = target.clone();
            let task =
                tokio::spawn(
                    async move { pool.collect_host(&task_target, deadline, inventory).await },
                );
            async move {
                let begun = Instant::now();
                let result = task.await.unwrap_or_else(|error| {
                    Err(HostFailure {
                        reason: HostReason::Internal,
                        message: error.to_string(),
                    })
                });
                (target, result, begun.elapsed())
            }
        }));
        let hosts = hosts.await;
        let fetched = started.elapsed();

        let mut out = FamiliesBuilder::new();
        if let Some(inventory) = &inventory {
            push_sr_families(&mut out, &inventory.srs, self.naming);
        }
        let complete = inventory.is_some() && hosts.iter().all(|(_, r, _)| r.is_ok());
        if complete {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        self.push_own(&mut out);
        let mut frames = Vec::with_capacity(hosts.len());
        let mut scraped = Vec::with_capacity(hosts.len());
        let mut outcomes = Vec::with_capacity(hosts.len());
        for (target, result, elapsed) in hosts {
            let failure = result.as_ref().err().map(|f| f.reason);
            let host = self.push_host(&mut out, &mut frames, &target, result, elapsed);
            outcomes.push(HostOutcome {
                name: host.name.clone(),
                uuid: host.uuid.clone(),
                address: target.endpoint.host.clone(),
                failure,
            });
            scraped.push(host);
        }
        self.push_error_counters(&mut out, &scraped);
        push_build_info(&mut out);
        // Every mode is a series, so that `== 0` alerts work without absent().
        for mode in TrustMode::ALL {
            out.push(
                "xen_exporter_xapi_tls_verify".into(),
                catalog::describe,
                Sample {
                    labels: Labels::head(Arc::from(vec![Label::new("mode", mode.as_str())])),
                    value: if mode == self.trust_mode { 1.0 } else { 0.0 },
                },
            );
        }
        out.push(
            "xen_collector_duration_seconds".into(),
            catalog::describe,
            Sample {
                labels: Labels::none(),
                value: started.elapsed().as_secs_f64(),
            },
        );
        if let Some(key) = &self.hash_uuids_key {
            // As `hash_builder_samples` hashes them in `xen_host_up` below.
            let mut hasher = uuids::Hasher::new(key.expose());
            for outcome in &mut outcomes {
                outcome.uuid = hasher.hash(&outcome.uuid);
            }
        }
        *self
            .last_collection
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(LastCollection {
            started: started_at,
            took: started.elapsed(),
            hosts: outcomes,
        }));
        if let Some(key) = &self.hash_uuids_key {
            // Before the hosts' rows join: their series maps hashed their own labels.
            uuids::hash_builder_samples(&mut out, key.expose());
        }
        let (families, dropped_own) = out.finish();
        let (exposition, dropped) = Exposition::new(families, frames, self.maps.layouts());
        let dropped = dropped + dropped_own;
        tracing::debug!(
            fetched_and_mapped = ?fetched,
            total = ?started.elapsed(),
            families = exposition.family_count(),
            dropped_duplicates = dropped,
            "Collection done"
        );
        exposition
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
        inventory: Option<Arc<Inventory>>,
    ) -> Result<HostSamples, HostFailure> {
        let _permit = match &self.fetch_limit {
            Some(limit) => Some(
                tokio::time::timeout_at(deadline, limit.clone().acquire_owned())
                    .await
                    .map_err(|_| HostFailure::from(xapi::Error::Timeout(self.timeout)))?
                    .map_err(|e| HostFailure {
                        reason: HostReason::Internal,
                        message: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let body = self.client.rrd_updates(&target.endpoint, deadline).await?;
        let mut parsed = rrd::parse(&body).map_err(|e| HostFailure {
            reason: HostReason::Xapi(xapi::Reason::Parse),
            message: e.to_string(),
        })?;
        let inventory = inventory.unwrap_or_default();
        // An owner the inventory does not know yet (a VM created a moment ago, whose event
        // is still on its way) is named by its UUID for this one scrape, as the original
        // exporter did: asking XAPI here would put an API call on the scrape path.
        let mapped = self.maps.map(
            &target.endpoint,
            &parsed,
            &inventory,
            &inventory.srs,
            target.known.as_ref(),
            self.hash_uuids_key.as_ref().map(SecretBytes::expose),
        );
        if !mapped.unknown_owners.is_empty() {
            tracing::debug!(
                host = %mapped.host.name,
                unknown = mapped.unknown_owners.len(),
                "RRD owners not in the inventory yet; named by UUID"
            );
        }
        let samples = mapped.into_frame(parsed.newest.take());
        let unresolved = &samples.unresolved;
        if self.halt_on_no_uuid && !unresolved.is_empty() {
            return Err(HostFailure {
                reason: HostReason::UnknownSr,
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
        frames: &mut Vec<Frame>,
        target: &Target,
        result: Result<HostSamples, HostFailure>,
        elapsed: Duration,
    ) -> HostEntry {
        let (host, up) = match result {
            Ok(HostSamples { host, frame, .. }) => {
                frames.extend(frame);
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
                    reason = failure.reason.as_str(),
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
        host
    }

    /// The record-derived families of the inventory snapshot rendered in `format`, waiting
    /// until `deadline` for a first snapshot; `None` without one. What a response writes
    /// before the collection, which needs no `/rrd_updates` to know them. A response asks
    /// for them before it starts the collection, so that a new snapshot's rendering does not
    /// add its memory to the collection's.
    pub async fn rendered_records(
        self: &Arc<Self>,
        format: Format,
        deadline: Instant,
    ) -> Option<Arc<Rendered>> {
        self.start();
        let inventory = self.inventory.get(deadline).await?;
        if let Some(done) = self.rendered_for(&inventory, format) {
            return Some(done);
        }
        let pool = self.clone();
        // Rendering a large pool takes tens of milliseconds: not on an async worker.
        tokio::task::spawn_blocking(move || pool.record_families(format))
            .await
            .ok()
            .flatten()
    }

    /// The families of `inventory` in `format` if they are rendered already: what a steady
    /// pool's scrapes find, with no hand-over to a blocking thread.
    fn rendered_for(&self, inventory: &Arc<Inventory>, format: Format) -> Option<Arc<Rendered>> {
        let cache = self
            .state_families
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (seen, rendered) = cache.as_ref()?;
        Arc::ptr_eq(seen, inventory)
            .then(|| rendered[slot_of(format)].clone())
            .flatten()
    }

    /// The collection deadline for a scraper's `timeout`: the pool's own timeout when
    /// `None` or longer.
    pub fn deadline(&self, timeout: Option<Duration>) -> Instant {
        Instant::now() + timeout.map_or(self.timeout, |t| t.min(self.timeout))
    }

    /// The record-derived families of the current inventory snapshot rendered in `format`,
    /// `None` before the first snapshot; rendered at the first call for a snapshot.
    fn record_families(&self, format: Format) -> Option<Arc<Rendered>> {
        let inventory = self.inventory.snapshot()?;
        let slot = slot_of(format);
        let mut cache = self
            .state_families
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((seen, rendered)) = cache.as_mut()
            && Arc::ptr_eq(seen, &inventory)
        {
            if let Some(done) = &rendered[slot] {
                return Some(done.clone());
            }
            let done = Arc::new(self.render_state(&inventory, format));
            rendered[slot] = Some(done.clone());
            return Some(done);
        }
        // The previous snapshot's renderings go first: they are stale, and kept while the new
        // ones are built they would add to the peak.
        *cache = None;
        let done = Arc::new(self.render_state(&inventory, format));
        let mut rendered = [None, None];
        rendered[slot] = Some(done.clone());
        *cache = Some((inventory, rendered));
        Some(done)
    }

    /// Builds and renders the record-derived families of `inventory`. Only the text is kept:
    /// it is smaller than the samples, and a steady pool is scraped in one format.
    fn render_state(&self, inventory: &Inventory, format: Format) -> Rendered {
        let mut out = FamiliesBuilder::new();
        state::push_families(&mut out, &inventory.state, &inventory.srs, self.collectors);
        let families = out.finish().0;
        // Hashed here, once per snapshot, like the hosts' series maps.
        let families = match &self.hash_uuids_key {
            Some(key) => uuids::hash_uuid_labels(families, key.expose()),
            None => families,
        };
        Rendered::new(families, format)
    }

    /// The pool's health as the exporter sees it, labelled with the pool's name: what
    /// `/metrics` shows for every pool of a configuration file.
    pub fn push_own(&self, out: &mut FamiliesBuilder) {
        let pool = || vec![Label::new("pool", self.name.clone())];
        let mut push = |family: &'static str, labels: Vec<Label>, value: f64| {
            state::push(out, family, labels, value)
        };
        let up = if self.inventory.is_current() {
            1.0
        } else {
            0.0
        };
        push("xen_pool_up", pool(), up);
        #[allow(clippy::cast_precision_loss)]
        push(
            "xen_pool_master_failovers_total",
            pool(),
            self.client.failovers() as f64,
        );
        if let Some(at) = *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) {
            push("xen_pool_last_success_timestamp_seconds", pool(), at);
        }
        let last = self
            .last_collection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(last) = last {
            push(
                "xen_pool_collection_duration_seconds",
                pool(),
                last.took.as_secs_f64(),
            );
        }
        let mut logins = 0;
        for stat in self.client.request_stats() {
            if stat.kind == "login" && stat.outcome == "ok" {
                logins += stat.count;
            }
            let mut labels = pool();
            labels.push(Label::new("kind", stat.kind));
            labels.push(Label::new("outcome", stat.outcome));
            #[allow(clippy::cast_precision_loss)]
            push(
                "xen_exporter_xapi_requests_total",
                labels.clone(),
                stat.count as f64,
            );
            push(
                "xen_exporter_xapi_request_duration_seconds_total",
                labels,
                stat.seconds,
            );
        }
        #[allow(clippy::cast_precision_loss)]
        push("xen_exporter_xapi_logins_total", pool(), logins as f64);
    }

    /// The error counters: every reason of every host of this scrape (`scraped`, named as in
    /// its `xen_host_up`) and of every source, 0 until it first happens, so that `increase()`
    /// sees the first failure; and those of hosts no longer scraped, as they were.
    fn push_error_counters(&self, out: &mut FamiliesBuilder, scraped: &[HostEntry]) {
        let mut host_errors = self
            .host_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for host in scraped {
            for reason in HostReason::all() {
                host_errors
                    .entry((host.name.clone(), host.uuid.clone(), reason))
                    .or_default();
            }
        }
        for ((name, uuid, reason), count) in host_errors {
            out.push(
                "xen_host_scrape_errors_total".into(),
                catalog::describe,
                Sample {
                    labels: Labels::head(Arc::from(vec![
                        Label::new("host", name),
                        Label::new("host_uuid", uuid),
                        Label::new("reason", reason.as_str()),
                    ])),
                    value: count as f64,
                },
            );
        }
        for ((source, reason), count) in self.inventory.errors() {
            out.push(
                "xen_collector_errors_total".into(),
                catalog::describe,
                Sample {
                    labels: Labels::head(Arc::from(vec![
                        Label::new("source", source.as_str()),
                        Label::new("reason", reason.as_str()),
                    ])),
                    value: count as f64,
                },
            );
        }
    }
}

/// `xen_exporter_build_info`.
pub fn push_build_info(out: &mut FamiliesBuilder) {
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
}

/// The catalog's name for a naming setting (the configuration layer cannot name the catalog's).
fn naming(setting: config::Naming) -> Naming {
    match setting {
        config::Naming::Compatible => Naming::Compatible,
        config::Naming::Prometheus => Naming::Prometheus,
    }
}

fn push_sr_families(out: &mut FamiliesBuilder, index: &SrIndex, naming: Naming) {
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
            let Some(renamed) = catalog::rename(naming, Cow::Borrowed(name)) else {
                continue;
            };
            out.push(
                renamed.family,
                |f| catalog::describe_as(naming, f, None),
                Sample {
                    labels: Labels::head(head.clone()),
                    #[allow(clippy::cast_precision_loss)]
                    value: value as f64,
                },
            );
        }
    }
}

/// The exposition one collection would produce from already-fetched `/rrd_updates` bodies and
/// an inventory, without any network: the whole join and mapping of a scrape, minus the
/// exporter's own health families. Used to compare output with the original exporter's on
/// the fixture bodies, and by benchmarks. A body that does not parse is skipped.
pub fn exposition_from_bodies(bodies: &[&[u8]], inventory: &Arc<Inventory>) -> Exposition {
    exposition_from_bodies_named(bodies, inventory, Naming::Compatible)
}

/// [`exposition_from_bodies`] with the families named by `naming`.
pub fn exposition_from_bodies_named(
    bodies: &[&[u8]],
    inventory: &Arc<Inventory>,
    naming: Naming,
) -> Exposition {
    let mut out = FamiliesBuilder::new();
    push_sr_families(&mut out, &inventory.srs, naming);
    let maps = rrd_map::MapCache::new(naming);
    let mut frames = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.iter().enumerate() {
        let Ok(mut parsed) = rrd::parse(body) else {
            continue;
        };
        // Each body is a host of its own, as a scrape keys maps by endpoint.
        let Ok(endpoint) = Endpoint::parse(&format!("https://body-{i}")) else {
            continue;
        };
        let mapped = maps.map(&endpoint, &parsed, inventory, &inventory.srs, None, None);
        frames.extend(mapped.into_frame(parsed.newest.take()).frame);
    }
    Exposition::new(out.finish().0, frames, maps.layouts()).0
}

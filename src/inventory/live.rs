//! Keeps the inventory current without polling: read every followed class once, then follow
//! `event.from` on its own connection and publish a new snapshot after each batch that
//! changed something. Any break in the stream (session lost, `EVENTS_LOST`, a bad token, a
//! dropped connection) leads to a fresh full read, with back-off while XAPI is unreachable.
//! When the master's certificate is pinned, each full read also learns every host's
//! certificate from the API (`host.get_server_certificate`) for the `/rrd_updates`
//! connections; between full reads only new hosts, or a host that showed another
//! certificate, are asked again, at most once a minute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Inventory;
use super::store::{DataSourceUnits, Store, followed};
use crate::config::Collectors;
use crate::xapi::{self, Client, records};

/// How long one `event.from` long poll waits for a change.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// First and longest pause before a new full read after a failure.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// Between full reads, certificates are asked for at most this often, so that a member that
/// is down (its certificate cannot be had) or an impostor does not cost a call per event.
const PIN_RETRY: Duration = Duration::from_secs(60);

/// Messages are also read whole this often (`message.get_all_records`, bodies dropped on
/// decoding): they are not in the database, XAPI keeps only the last 512 deletions for the
/// stream, and a follower can drift. A full read (after any break of the stream) starts them
/// afresh as well.
pub const MESSAGE_REREAD: Duration = Duration::from_secs(15 * 60);

/// What failed outside a single host's `/rrd_updates`: the `source` of
/// `xen_collector_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A full read of the records (the first, or a new one after the stream broke).
    Inventory,
    /// The event stream that keeps the inventory current.
    Events,
}

impl Source {
    /// Every source.
    pub const ALL: [Source; 2] = [Source::Inventory, Source::Events];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Inventory => "inventory",
            Source::Events => "events",
        }
    }
}

/// Why a full read failed or the stream broke: the `reason` of `xen_collector_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The request failed.
    Xapi(xapi::Reason),
    /// `EVENTS_LOST`: XAPI dropped events queued for the stream.
    EventsLost,
    /// `EVENT_FROM_TOKEN_*`: XAPI refused the stream's token.
    Token,
    /// An event carried a record that could not be read; it was skipped.
    BadRecord,
}

impl Reason {
    /// Every reason.
    pub fn all() -> impl Iterator<Item = Reason> {
        xapi::Reason::ALL.into_iter().map(Reason::Xapi).chain([
            Reason::EventsLost,
            Reason::Token,
            Reason::BadRecord,
        ])
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Xapi(reason) => reason.as_str(),
            Reason::EventsLost => "events_lost",
            Reason::Token => "token",
            Reason::BadRecord => "bad_record",
        }
    }
}

/// The live inventory of one pool.
#[derive(Debug)]
pub struct Live {
    client: Arc<Client>,
    current: watch::Sender<Published>,
    /// Failures by source and reason.
    errors: Mutex<BTreeMap<(Source, Reason), u64>>,
    wait: Duration,
    /// When certificates were last asked for outside a full read.
    pins_asked: Mutex<Option<Instant>>,
    /// Which optional classes to read and follow.
    collectors: Collectors,
    /// Whether a full read asks every host for its data sources' units.
    read_units: bool,
}

/// A `data_source` record as `host.get_data_sources` returns it, reduced to what the help
/// texts use.
#[derive(Debug, Deserialize)]
struct DataSource {
    name_label: String,
    #[serde(default)]
    units: String,
}

/// What scrapes see: the latest snapshot, and whether a full read has failed yet (so that a
/// scrape does not wait for a first snapshot that is not coming).
#[derive(Debug, Default, Clone)]
struct Published {
    inventory: Option<Arc<Inventory>>,
    failed: bool,
    /// The stream broke and no full read has succeeded since.
    broken: bool,
}

impl Live {
    /// A live inventory that will follow `client`'s pool once [`Live::run`] is driven; until
    /// the first full read it holds no snapshot. `wait` is the long-poll time per call;
    /// `collectors` says which optional classes are read and followed.
    pub fn new(client: Arc<Client>, wait: Duration, collectors: Collectors) -> Live {
        Live {
            client,
            current: watch::Sender::new(Published::default()),
            errors: Mutex::new(BTreeMap::new()),
            wait,
            pins_asked: Mutex::new(None),
            collectors,
            read_units: false,
        }
    }

    /// Makes each full read also ask every host for the units its data sources declare
    /// (`host.get_data_sources`, one call per host), when `read` is true: the Prometheus
    /// naming says them in the help of data sources the catalog does not know.
    pub fn reading_units(self, read: bool) -> Live {
        Live {
            read_units: read,
            ..self
        }
    }

    /// The current snapshot, if a full read ever succeeded.
    pub fn snapshot(&self) -> Option<Arc<Inventory>> {
        self.current.borrow().inventory.clone()
    }

    /// The current snapshot. Before the first one, waits until `deadline` for it, unless a
    /// full read has already failed (XAPI down, bad credentials): then there is nothing to
    /// wait for and the scrape goes on without one.
    pub async fn get(&self, deadline: Instant) -> Option<Arc<Inventory>> {
        let mut rx = self.current.subscribe();
        let ready = |p: &Published| p.inventory.is_some() || p.failed;
        match tokio::time::timeout_at(deadline, rx.wait_for(ready)).await {
            Ok(Ok(published)) => published.inventory.clone(),
            _ => self.snapshot(),
        }
    }

    /// Whether the snapshot is current: the last full read succeeded and the event stream
    /// has not broken since.
    pub fn is_current(&self) -> bool {
        let p = self.current.borrow();
        p.inventory.is_some() && !p.failed && !p.broken
    }

    /// Failures so far of every source for every reason, 0 for those that never happened:
    /// a counter that exists before its first increment lets `increase()` see that one.
    pub fn errors(&self) -> Vec<((Source, Reason), u64)> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        Source::ALL
            .into_iter()
            .flat_map(|source| Reason::all().map(move |reason| (source, reason)))
            .map(|key| (key, errors.get(&key).copied().unwrap_or(0)))
            .collect()
    }

    fn count(&self, source: Source, reason: Reason) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((source, reason))
            .or_default() += 1;
    }

    fn publish(&self, store: &Store) {
        let inventory = Inventory::from_store(store);
        tracing::debug!(
            hosts = inventory.hosts.len(),
            vms = inventory.vm_count(),
            srs = inventory.srs.srs.len(),
            pbds = inventory.state.pbds.len(),
            "Inventory updated"
        );
        self.current.send_replace(Published {
            inventory: Some(Arc::new(inventory)),
            failed: false,
            broken: false,
        });
    }

    /// Follows the pool forever (cancel the future to stop): full read, then events, and a
    /// new full read whenever the stream breaks.
    pub async fn run(&self) {
        let mut backoff = BACKOFF.0;
        loop {
            match self.sync().await {
                Ok((mut store, token, classes)) => {
                    // With messages followed, the first `event.from` returns every message
                    // (see `followed`): the snapshot waits for it, so that it is built once
                    // rather than twice in a row.
                    let unpublished = self.collectors.messages;
                    if !unpublished {
                        self.publish(&store);
                    }
                    backoff = BACKOFF.0;
                    let error = self.follow(&mut store, token, &classes, unpublished).await;
                    let reason = stream_reason(&error);
                    self.count(Source::Events, reason);
                    self.current.send_modify(|p| p.broken = true);
                    tracing::warn!(reason = reason.as_str(), %error, "XAPI event stream lost; reading the inventory again");
                }
                Err(error) => {
                    let reason = stream_reason(&error);
                    self.count(Source::Inventory, reason);
                    self.current.send_modify(|p| p.failed = true);
                    tracing::warn!(reason = reason.as_str(), %error, retry_in = ?backoff, "Cannot read the inventory from XAPI");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Reads every followed class. The token is taken first, so that a change made during
    /// the read is seen again by the first `event.from` rather than lost.
    /// Also returns the classes to follow: those of the collectors, less a class this XAPI
    /// lacks.
    async fn sync(&self) -> Result<(Store, String, Vec<&'static str>), xapi::Error> {
        let mut classes = followed(self.collectors).0;
        let client = &self.client;
        let pools = client.all_records::<records::Pool>("pool").await?;
        let token = match pools.keys().next() {
            Some(pool) => {
                client
                    .call::<String>(
                        "event.inject",
                        &[Value::from("pool"), Value::from(pool.as_str())],
                    )
                    .await?
            }
            None => String::new(),
        };
        // One class at a time: a large pool's VM records are megabytes of JSON, and reading
        // them all at once would set the process's peak memory for its whole life.
        let hosts = client.all_records::<records::Host>("host").await?;
        let host_metrics = client.all_records("host_metrics").await?;
        let vms = client.all_records("VM").await?;
        let vm_metrics = client.all_records("VM_metrics").await?;
        let vm_guest_metrics = client.all_records("VM_guest_metrics").await?;
        let srs = client.all_records("SR").await?;
        let pbds = client.all_records("PBD").await?;
        let pifs = client.all_records("PIF").await?;
        let (vbds, vdis) = if self.collectors.disks {
            let mut vbds: records::Records<records::Vbd> = client.all_records("VBD").await?;
            vbds.retain(|_, v| v.is_disk());
            vbds.shrink_to_fit();
            (vbds, client.all_records("VDI").await?)
        } else {
            Default::default()
        };
        let certificates = if self.collectors.certificates {
            match client
                .all_records::<records::Certificate>("Certificate")
                .await
            {
                Ok(certificates) => certificates,
                // Before xapi 1.249 there is no such class: only what hosts serve is known.
                Err(xapi::Error::Api(f)) if f.code == "MESSAGE_METHOD_UNKNOWN" => {
                    classes.retain(|c| *c != "certificate");
                    Default::default()
                }
                Err(error) => return Err(error),
            }
        } else {
            Default::default()
        };
        client.learn_members(hosts.values().map(|h| h.address.clone()));
        let served = self.learn_certificates(&hosts, false).await;
        let served_expiry = if self.collectors.certificates {
            self.served_expiry(&hosts, &certificates, served).await
        } else {
            Default::default()
        };
        let data_source_units = if self.read_units {
            Arc::new(self.data_source_units(&hosts).await)
        } else {
            Default::default()
        };
        let store = Store {
            pools,
            hosts,
            host_metrics,
            vms,
            vm_metrics,
            vm_guest_metrics,
            srs,
            pbds,
            pifs,
            vbds,
            vdis,
            // Filled by the first event.from, which returns every message.
            messages: Default::default(),
            certificates,
            served_expiry,
            data_source_units,
        };
        Ok((store, token, classes))
    }

    /// The unit each host's data sources declare, every host asked at once; the first host
    /// to name a source gives its unit. A host that cannot answer leaves its sources
    /// without one, which costs only the unit in a help text: logged, not counted.
    async fn data_source_units(&self, hosts: &records::Records<records::Host>) -> DataSourceUnits {
        let replies = futures::future::join_all(hosts.keys().map(|reference| {
            let reference = Value::from(reference.as_str());
            async move {
                self.client
                    .call::<Vec<DataSource>>("host.get_data_sources", &[reference])
                    .await
            }
        }))
        .await;
        let mut units = DataSourceUnits::new();
        for (host, reply) in hosts.values().zip(replies) {
            match reply {
                Ok(sources) => {
                    for source in sources.into_iter().filter(|s| !s.units.is_empty()) {
                        units
                            .entry(source.name_label.into_boxed_str())
                            .or_insert_with(|| source.units.into_boxed_str());
                    }
                }
                Err(error) => tracing::debug!(
                    host = %host.name_label,
                    %error,
                    "Cannot read the units of the host's data sources"
                ),
            }
        }
        units
    }

    /// Applies event batches until the stream breaks; returns why it broke. `unpublished`:
    /// the store read has not been published yet, and is after the first batch (or when the
    /// stream breaks before it).
    async fn follow(
        &self,
        store: &mut Store,
        mut token: String,
        classes: &[&str],
        mut unpublished: bool,
    ) -> xapi::Error {
        let mut messages_read = Instant::now();
        loop {
            let batch = match self.client.event_from(classes, &token, self.wait).await {
                Ok(batch) => batch,
                Err(error) => {
                    if unpublished {
                        self.publish(store);
                    }
                    return error;
                }
            };
            let mut changed = false;
            for event in &batch.events {
                match store.apply(event) {
                    Ok(c) => changed |= c,
                    Err(error) => {
                        // One bad record must not freeze the inventory: skip it, say so.
                        self.count(Source::Events, Reason::BadRecord);
                        tracing::warn!(%error, "Ignoring an event XAPI sent");
                    }
                }
            }
            if self.collectors.messages && messages_read.elapsed() >= MESSAGE_REREAD {
                messages_read = Instant::now();
                changed |= self.reread_messages(store).await;
            }
            if changed || unpublished {
                unpublished = false;
                self.publish(store);
            }
            self.relearn_certificates(&store.hosts).await;
            if batch.token.is_empty() {
                return xapi::Error::Decode("event.from returned no token".into());
            }
            token = batch.token;
        }
    }
}

impl Live {
    /// Replaces the message table with a fresh read, correcting any drift of the stream;
    /// returns whether it changed. A failure keeps the table, is counted and logged, and does
    /// not break the stream.
    async fn reread_messages(&self, store: &mut Store) -> bool {
        match self.client.all_records::<records::Message>("message").await {
            Ok(messages) => {
                let changed = messages != store.messages;
                store.messages = messages;
                changed
            }
            Err(error) => {
                self.count(Source::Events, stream_reason(&error));
                tracing::warn!(%error, "Cannot read XAPI messages again; keeping those the event stream brought");
                false
            }
        }
    }

    /// The PEM text of the certificate each host serves (`host.get_server_certificate`),
    /// asked of all of them at once, in the order given.
    async fn served_certificates<'a>(
        &self,
        references: impl Iterator<Item = &'a String>,
    ) -> Vec<Result<String, xapi::Error>> {
        futures::future::join_all(references.map(|reference| {
            let reference = Value::from(reference.as_str());
            async move {
                self.client
                    .call::<String>("host.get_server_certificate", &[reference])
                    .await
            }
        }))
        .await
    }

    /// Expiry of the certificate each host serves, for the hosts without a `host` certificate
    /// record (every host on an XAPI before 1.294 without installed certificates). `known`:
    /// the PEM texts already fetched by this full read (fingerprint mode fetches every
    /// host's), so that no host is asked twice. A host that cannot be asked or whose answer
    /// does not parse is counted (source `inventory`), logged, and has no series; the read
    /// goes on.
    async fn served_expiry(
        &self,
        hosts: &records::Records<records::Host>,
        certificates: &records::Records<records::Certificate>,
        mut known: BTreeMap<String, String>,
    ) -> std::collections::HashMap<String, i64> {
        let recorded: std::collections::HashSet<&str> = certificates
            .values()
            .filter(|c| c.cert_type.is_empty() || c.cert_type.eq_ignore_ascii_case("host"))
            .map(|c| c.host.as_str())
            .collect();
        let wanted: Vec<&String> = hosts
            .keys()
            .filter(|r| !recorded.contains(r.as_str()) && !known.contains_key(*r))
            .collect();
        let answers = self.served_certificates(wanted.iter().copied()).await;
        for (reference, answer) in wanted.into_iter().zip(answers) {
            match answer {
                Ok(pem) => {
                    known.insert(reference.clone(), pem);
                }
                Err(error) => {
                    self.count(Source::Inventory, stream_reason(&error));
                    tracing::warn!(
                        host = %hosts[reference].name_label,
                        %error,
                        "Cannot read the certificate the host serves; no expiry for it"
                    );
                }
            }
        }
        known
            .into_iter()
            .filter(|(reference, _)| !recorded.contains(reference.as_str()))
            .filter_map(|(reference, pem)| match xapi::tls::certificate_expiry(&pem) {
                Ok(expiry) => Some((reference, expiry)),
                Err(error) => {
                    self.count(Source::Inventory, Reason::BadRecord);
                    tracing::warn!(host = %hosts.get(&reference).map_or("", |h| h.name_label.as_str()), %error, "Cannot read the expiry of the certificate the host serves");
                    None
                }
            })
            .collect()
    }

    /// Pins each host's certificate as the master reports it (fingerprint mode only).
    /// `only_unknown`: skip hosts whose address already has a pin. A host whose certificate
    /// cannot be had is logged and left unpinned: its `/rrd_updates` then fails as `tls`.
    /// Returns the PEM text each host answered, by host reference.
    async fn learn_certificates(
        &self,
        hosts: &records::Records<records::Host>,
        only_unknown: bool,
    ) -> BTreeMap<String, String> {
        let mut answered = BTreeMap::new();
        let trust = self.client.trust();
        if !trust.pins_members() {
            return answered;
        }
        let wanted: Vec<(&String, &records::Host)> = hosts
            .iter()
            .map(|(reference, host)| (reference, &**host))
            .filter(|(_, h)| !h.address.is_empty())
            .filter(|(_, h)| !only_unknown || trust.pinned(&h.address).is_none())
            .collect();
        let answers = self
            .served_certificates(wanted.iter().map(|(reference, _)| *reference))
            .await;
        for ((reference, host), answer) in wanted.into_iter().zip(answers) {
            let learned = answer.map_err(|e| e.to_string()).and_then(|pem| {
                let pinned = trust.pin(&host.address, &pem);
                answered.insert(reference.clone(), pem);
                pinned
            });
            match learned {
                Ok(fingerprint) => tracing::debug!(
                    host = %host.name_label,
                    address = %host.address,
                    %fingerprint,
                    "Pinned the host's certificate as XAPI reports it"
                ),
                Err(error) => tracing::warn!(
                    host = %host.name_label,
                    address = %host.address,
                    %error,
                    "Cannot learn the host's certificate from XAPI; its /rrd_updates fail until it is learned"
                ),
            }
        }
        answered
    }

    /// Between full reads: asks again for new hosts' certificates, or for all of them after
    /// a host presented an unknown one, at most once per [`PIN_RETRY`].
    async fn relearn_certificates(&self, hosts: &records::Records<records::Host>) {
        let trust = self.client.trust();
        if !trust.pins_members() {
            return;
        }
        let unknown = hosts
            .values()
            .any(|h| !h.address.is_empty() && trust.pinned(&h.address).is_none());
        let now = Instant::now();
        let refresh = {
            let mut asked = self.pins_asked.lock().unwrap_or_else(|e| e.into_inner());
            if asked.is_some_and(|t| now.duration_since(t) < PIN_RETRY) {
                return;
            }
            // Taken only when allowed to act on it, so that a refusal during the quiet
            // minute is still acted on afterwards.
            let refresh = trust.take_refresh_request();
            if !refresh && !unknown {
                return;
            }
            *asked = Some(now);
            refresh
        };
        self.learn_certificates(hosts, !refresh).await;
    }
}

/// Why the stream broke or a full read failed.
fn stream_reason(error: &xapi::Error) -> Reason {
    match error {
        xapi::Error::Api(f) if f.code == "EVENTS_LOST" => Reason::EventsLost,
        xapi::Error::Api(f) if f.code.starts_with("EVENT_FROM_TOKEN") => Reason::Token,
        other => Reason::Xapi(other.reason()),
    }
}

//! Keeps the inventory current without polling: read every followed class once, then follow
//! `event.from` on its own connection and publish a new snapshot after each batch that
//! changed something. Any break in the stream (session lost, `EVENTS_LOST`, a bad token, a
//! dropped connection) leads to a fresh full read, with back-off while XAPI is unreachable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Inventory;
use super::store::{CLASSES, Store};
use crate::xapi::{self, Client, records};

/// How long one `event.from` long poll waits for a change.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// First and longest pause before a new full read after a failure.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// The live inventory of one pool.
#[derive(Debug)]
pub struct Live {
    client: Arc<Client>,
    current: watch::Sender<Option<Arc<Inventory>>>,
    /// Stream failures by bounded reason.
    errors: Mutex<BTreeMap<&'static str, u64>>,
    wait: Duration,
}

impl Live {
    /// A live inventory that will follow `client`'s pool once [`Live::run`] is driven; until
    /// the first full read it holds no snapshot. `wait` is the long-poll time per call.
    pub fn new(client: Arc<Client>, wait: Duration) -> Live {
        Live {
            client,
            current: watch::Sender::new(None),
            errors: Mutex::new(BTreeMap::new()),
            wait,
        }
    }

    /// The current snapshot, if a full read ever succeeded.
    pub fn snapshot(&self) -> Option<Arc<Inventory>> {
        self.current.borrow().clone()
    }

    /// The current snapshot, waiting until `deadline` for the first one.
    pub async fn get(&self, deadline: Instant) -> Option<Arc<Inventory>> {
        let mut rx = self.current.subscribe();
        let first = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
        match first {
            Ok(Ok(current)) => current.clone(),
            _ => self.snapshot(),
        }
    }

    /// Stream failures so far, by reason.
    pub fn errors(&self) -> Vec<(&'static str, u64)> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn count(&self, reason: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
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
        self.current.send_replace(Some(Arc::new(inventory)));
    }

    /// Follows the pool forever (cancel the future to stop): full read, then events, and a
    /// new full read whenever the stream breaks.
    pub async fn run(&self) {
        let mut backoff = BACKOFF.0;
        loop {
            match self.sync().await {
                Ok((mut store, token)) => {
                    self.publish(&store);
                    backoff = BACKOFF.0;
                    let error = self.follow(&mut store, token).await;
                    let reason = stream_reason(&error);
                    self.count(reason);
                    tracing::warn!(reason, %error, "XAPI event stream lost; reading the inventory again");
                }
                Err(error) => {
                    self.count(stream_reason(&error));
                    tracing::warn!(reason = error.reason(), %error, retry_in = ?backoff, "Cannot read the inventory from XAPI");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Reads every followed class. The token is taken first, so that a change made during
    /// the read is seen again by the first `event.from` rather than lost.
    async fn sync(&self) -> Result<(Store, String), xapi::Error> {
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
        let (hosts, host_metrics, vms, vm_metrics, vm_guest_metrics, srs, pbds, pifs) = tokio::try_join!(
            client.all_records("host"),
            client.all_records("host_metrics"),
            client.all_records("VM"),
            client.all_records("VM_metrics"),
            client.all_records("VM_guest_metrics"),
            client.all_records("SR"),
            client.all_records("PBD"),
            client.all_records("PIF"),
        )?;
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
        };
        Ok((store, token))
    }

    /// Applies event batches until the stream breaks; returns why it broke.
    async fn follow(&self, store: &mut Store, mut token: String) -> xapi::Error {
        loop {
            let batch = match self.client.event_from(CLASSES, &token, self.wait).await {
                Ok(batch) => batch,
                Err(error) => return error,
            };
            let mut changed = false;
            for event in &batch.events {
                match store.apply(event) {
                    Ok(c) => changed |= c,
                    Err(error) => {
                        // One bad record must not freeze the inventory: skip it, say so.
                        self.count("bad_record");
                        tracing::warn!(%error, "Ignoring an event XAPI sent");
                    }
                }
            }
            if changed {
                self.publish(store);
            }
            if batch.token.is_empty() {
                return xapi::Error::Decode("event.from returned no token".into());
            }
            token = batch.token;
        }
    }
}

/// A bounded reason for a broken stream or failed read.
fn stream_reason(error: &xapi::Error) -> &'static str {
    match error {
        xapi::Error::Api(f) if f.code == "EVENTS_LOST" => "events_lost",
        xapi::Error::Api(f) if f.code.starts_with("EVENT_FROM_TOKEN") => "token",
        other => other.reason(),
    }
}

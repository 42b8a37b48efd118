//! The HTTP side: `/metrics` (text 0.0.4 or OpenMetrics, gzip when asked), the status page
//! `/` (`status.rs`), `/-/healthy` and `/-/ready`. Concurrent scrapes share one collection in
//! flight. Never sees XAPI wire data: it calls [`crate::collect::Pool::scrape`] and the
//! encoder, and reads [`crate::collect::Pool::status`].
//!
//! Protection and limits (TLS, basic auth, the web configuration file and its reloading,
//! timeouts, the request cap) live in the submodules; [`listen::serve`] puts them together.

mod auth;
mod gzip;
mod limits;
pub mod listen;
mod reload;
mod status;
mod tape;
mod tls;
pub mod web_config;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::collect::Pool;
use crate::metrics::FamiliesBuilder;
use crate::metrics::encode::{self, Format};
use crate::metrics::exposition::{Exposition, Rendered};
use crate::server::tape::Collected;

type Collection = Arc<Collected>;
type InFlight = Arc<Mutex<Option<(u64, Shared<BoxFuture<'static, Collection>>)>>>;
type LastCollection = Arc<Mutex<Option<(tokio::time::Instant, Collection)>>>;

/// What the handlers share.
#[derive(Debug)]
pub struct State {
    pools: Vec<Slot>,
    /// Which pools `/metrics` collects: the one pool of the environment-variable setup
    /// (`Some(0)`), or none (a configuration file: pools are behind `/probe`).
    metrics_pool: Option<usize>,
    /// What the process exports, in a sentence, for the status page.
    description: String,
    /// `--scrape.min-interval`.
    min_interval: Duration,
    /// Subtracted from Prometheus' scrape timeout to get the collection deadline.
    timeout_offset: Duration,
}

/// One pool and its collection in flight.
#[derive(Debug)]
struct Slot {
    pool: Arc<Pool>,
    inflight: InFlight,
    next_generation: std::sync::atomic::AtomicU64,
    /// The last completed collection, kept when `--scrape.min-interval` is on.
    last: LastCollection,
}

/// How `/metrics` and `/probe` map to pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// The environment-variable setup: `/metrics` is the one pool, as the original exporter.
    MetricsIsThePool,
    /// A configuration file: `/metrics` has the exporter's own metrics, `/probe?target=<pool>`
    /// each pool.
    ProbePerPool,
}

impl State {
    /// State for any number of pools.
    pub fn for_pools(
        pools: Vec<Arc<Pool>>,
        exposure: Exposure,
        description: &str,
        min_interval: Duration,
        timeout_offset: Duration,
    ) -> Arc<State> {
        let metrics_pool =
            (exposure == Exposure::MetricsIsThePool && !pools.is_empty()).then_some(0);
        Arc::new(State {
            pools: pools
                .into_iter()
                .map(|pool| Slot {
                    pool,
                    inflight: Arc::new(Mutex::new(None)),
                    next_generation: std::sync::atomic::AtomicU64::new(0),
                    last: Arc::new(Mutex::new(None)),
                })
                .collect(),
            metrics_pool,
            description: description.to_string(),
            min_interval,
            timeout_offset,
        })
    }

    /// The families of pool `index`'s collection in flight, or of a new one if none is
    /// running, within `timeout` when the scraper gave one. The collection runs in its own
    /// task, so a scraper that disconnects does not cancel it for the others, and it clears
    /// the in-flight slot itself when done.
    async fn collect(&self, index: usize, timeout: Option<Duration>) -> Collection {
        let slot = &self.pools[index];
        if !self.min_interval.is_zero()
            && let Some((done, families)) =
                slot.last.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && done.elapsed() < self.min_interval
        {
            return families.clone();
        }
        let shared = {
            let mut inflight = slot.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.as_ref() {
                Some((_, shared)) => shared.clone(),
                None => {
                    let generation = slot
                        .next_generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let pool = slot.pool.clone();
                    let in_flight = slot.inflight.clone();
                    let last = (!self.min_interval.is_zero()).then(|| slot.last.clone());
                    let task = tokio::spawn(async move {
                        let families = Arc::new(Collected::new(pool.scrape(timeout).await));
                        if let Some(last) = last {
                            *last.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some((tokio::time::Instant::now(), families.clone()));
                        }
                        let mut slot = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                            *slot = None;
                        }
                        families
                    });
                    let shared = async move {
                        match task.await {
                            Ok(families) => families,
                            Err(error) => {
                                tracing::error!(%error, "Collection task failed");
                                Arc::new(Collected::default())
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    *inflight = Some((generation, shared.clone()));
                    shared
                }
            }
        };
        shared.await
    }

    /// The exporter's own families for every pool (what `/metrics` shows with a
    /// configuration file): no XAPI call.
    fn own_families(&self) -> Collection {
        let mut out = FamiliesBuilder::new();
        for slot in &self.pools {
            slot.pool.push_own(&mut out);
        }
        crate::collect::push_build_info(&mut out);
        Arc::new(Collected::new(Exposition::from_families(out.finish().0)))
    }

    /// Collection deadline from Prometheus' `X-Prometheus-Scrape-Timeout-Seconds`, minus
    /// the offset, so that the answer arrives before Prometheus gives up.
    fn scrape_timeout(&self, headers: &HeaderMap) -> Option<Duration> {
        let seconds: f64 = headers
            .get("x-prometheus-scrape-timeout-seconds")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !seconds.is_finite() || seconds <= 0.0 {
            return None;
        }
        let timeout = Duration::from_secs_f64(seconds.min(86_400.0));
        // Never below a small floor: a scraper asking for less than the offset still gets an
        // answer rather than an instant failure of every host.
        Some(
            timeout
                .checked_sub(self.timeout_offset)
                .unwrap_or(Duration::ZERO)
                .max(MIN_DEADLINE),
        )
    }
}

/// Default `--scrape.timeout-offset`.
pub const DEFAULT_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// The shortest collection deadline a scrape timeout can lead to.
const MIN_DEADLINE: Duration = Duration::from_millis(100);

/// The routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .with_state(state)
}

/// Reads what the pools' last collections left; never starts one (nor a pool).
async fn status_page(AxumState(state): AxumState<Arc<State>>) -> Html<String> {
    let pools: Vec<_> = state.pools.iter().map(|slot| slot.pool.status()).collect();
    Html(status::render(
        &state.description,
        &pools,
        state.metrics_pool.is_none(),
        std::time::SystemTime::now(),
    ))
}

async fn ready(AxumState(state): AxumState<Arc<State>>) -> Response {
    // With a configuration file pools start on their first probe: readiness is then only
    // "serving"; per-pool health is xen_pool_up.
    let ready = match state.metrics_pool {
        Some(index) => state.pools[index].pool.is_ready(),
        None => true,
    };
    if ready {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: no successful XAPI login yet\n",
        )
            .into_response()
    }
}

async fn metrics(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap) -> Response {
    match state.metrics_pool {
        Some(index) => pool_exposition(&state, index, &headers),
        None => {
            let own = state.own_families();
            exposition(
                &headers,
                None,
                Box::new(move || futures::future::ready(own).boxed()),
            )
        }
    }
}

/// `/probe?target=<pool name>`, the multi-target pattern of the blackbox and SNMP exporters.
async fn probe(
    AxumState(state): AxumState<Arc<State>>,
    Query(query): Query<ProbeQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(target) = query.target.filter(|t| !t.is_empty()) else {
        return (
            StatusCode::BAD_REQUEST,
            "The target parameter is missing: /probe?target=<pool name>\n",
        )
            .into_response();
    };
    let Some(index) = state.pools.iter().position(|s| s.pool.name() == target) else {
        // The name comes from the request: echo it only as text, never as HTML.
        return (
            StatusCode::NOT_FOUND,
            format!("Unknown target {target:?}: not a pool of the configuration\n"),
        )
            .into_response();
    };
    pool_exposition(&state, index, &headers)
}

/// The response for pool `index`: its record families, then its collection (shared with
/// the scrapes in flight), within the scraper's timeout.
fn pool_exposition(state: &Arc<State>, index: usize, headers: &HeaderMap) -> Response {
    let pool = state.pools[index].pool.clone();
    let deadline = pool.deadline(state.scrape_timeout(headers));
    let shared = state.clone();
    let start = move || {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let collection = tokio::spawn(async move { shared.collect(index, Some(remaining)).await });
        async move {
            collection.await.unwrap_or_else(|error| {
                tracing::error!(%error, "Collection task failed");
                Arc::new(Collected::default())
            })
        }
        .boxed()
    };
    exposition(headers, Some((pool, deadline)), Box::new(start))
}

/// The query of `/probe`.
#[derive(Debug, serde::Deserialize)]
struct ProbeQuery {
    target: Option<String>,
}

/// Starts a collection when called, and gives its families.
type StartCollection = Box<dyn FnOnce() -> BoxFuture<'static, Collection> + Send>;

/// The response for a collection of `pool` (or of the exporter itself when `None`), due by
/// the deadline given with the pool. The record-derived families of the pool's inventory
/// are known before the collection: they are rendered (when the snapshot is new) before it
/// starts, so that the two do not add up in memory, then written while the hosts are being
/// fetched, so that only the RRD part is left to send once the last host has answered.
fn exposition(
    headers: &HeaderMap,
    pool: Option<(Arc<Pool>, tokio::time::Instant)>,
    start: StartCollection,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = encode::negotiate(accept);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    // Streamed in chunks so that a large pool's text never sits whole in memory. The task
    // writes the response into a channel one chunk deep, and stops when the client goes.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let response = Writer {
            sender,
            format,
            gzip,
            started: tokio::time::Instant::now(),
            bytes: 0,
        };
        let _ = response.write_all(pool, start).await;
    });
    let chunks = futures::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), receiver))
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// Rendered text compressed, as the owner of the [`Bytes`] that send it.
struct DeflatedText(Arc<Rendered>);

impl AsRef<[u8]> for DeflatedText {
    fn as_ref(&self) -> &[u8] {
        &self.0.deflated.bytes
    }
}

/// The client went away: stop writing.
#[derive(Debug)]
struct Gone;

/// Writes one response into the channel its body reads.
struct Writer {
    sender: tokio::sync::mpsc::Sender<Bytes>,
    format: Format,
    gzip: bool,
    started: tokio::time::Instant,
    bytes: usize,
}

impl Writer {
    async fn send(&mut self, chunk: Bytes) -> Result<(), Gone> {
        self.bytes += chunk.len();
        self.sender.send(chunk).await.map_err(|_| Gone)
    }

    /// The record families as soon as they are known, then the collection without the
    /// names already written (no name may appear twice in an exposition), read from the tape
    /// it shares with the other responses reading it now.
    async fn write_all(
        mut self,
        pool: Option<(Arc<Pool>, tokio::time::Instant)>,
        start: StartCollection,
    ) -> Result<(), Gone> {
        let format = self.format;
        if self.gzip {
            self.send(Bytes::from_static(&gzip::HEADER)).await?;
        }
        let records = match &pool {
            Some((pool, deadline)) => pool.rendered_records(format, *deadline).await,
            None => None,
        };
        let mut collection = start();
        let (records, mut reader) = match records {
            Some(rendered) => {
                let kind = self.kind(Some(&rendered));
                let mut joined = None;
                for chunk in self.record_chunks(&rendered) {
                    self.send_joining(chunk, &mut collection, &mut joined, &kind)
                        .await?;
                }
                let reader = match joined {
                    Some(reader) => reader,
                    None => collection.await.reader(kind),
                };
                (Some(rendered), reader)
            }
            None => {
                let collection = collection.await;
                // The inventory arrived during the collection.
                let records = match &pool {
                    Some((pool, _)) => {
                        pool.rendered_records(format, tokio::time::Instant::now())
                            .await
                    }
                    None => None,
                };
                if let Some(rendered) = &records {
                    for chunk in self.record_chunks(rendered) {
                        self.send(chunk).await?;
                    }
                }
                let reader = collection.reader(self.kind(records.as_ref()));
                (records, reader)
            }
        };
        while let Some(chunk) = reader.next().await {
            self.send(chunk).await?;
        }
        if self.gzip {
            let mut crc = flate2::Crc::new();
            if let Some(rendered) = &records {
                crc.combine(&rendered.deflated.crc);
            }
            if let Some(rest) = reader.crc() {
                crc.combine(&rest);
            }
            let trailer = gzip::trailer(&crc);
            self.send(Bytes::copy_from_slice(&trailer)).await?;
        }
        tracing::debug!(elapsed = ?self.started.elapsed(), bytes = self.bytes, "Exposition sent");
        Ok(())
    }

    /// What this response reads of a collection: its format, and the families it has
    /// written before it.
    fn kind(&self, records: Option<&Arc<Rendered>>) -> tape::Kind {
        tape::Kind {
            format: self.format,
            gzip: self.gzip,
            skip: records.map_or_else(Vec::new, |r| r.names.clone()),
        }
    }

    /// Text rendered once for many responses: as it is kept, compressed, for a gzip
    /// response (no copy); expanded a piece at a time for a plain one.
    fn record_chunks(&self, rendered: &Arc<Rendered>) -> Box<dyn Iterator<Item = Bytes> + Send> {
        if self.gzip {
            Box::new(std::iter::once(Bytes::from_owner(DeflatedText(
                rendered.clone(),
            ))))
        } else {
            Box::new(rendered.pieces().map(Bytes::from))
        }
    }

    /// Sends `chunk`, and meanwhile joins the collection's tape as soon as the collection is
    /// done. A tape keeps its chunks for the readers it has: a response that joined only after
    /// writing every record family (a slow client) would find the first chunks gone and
    /// encode a tape of its own.
    async fn send_joining(
        &mut self,
        chunk: Bytes,
        collection: &mut BoxFuture<'static, Collection>,
        joined: &mut Option<tape::Reader>,
        kind: &tape::Kind,
    ) -> Result<(), Gone> {
        self.bytes += chunk.len();
        let send = self.sender.send(chunk);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.map_err(|_| Gone),
                done = &mut *collection, if joined.is_none() => {
                    *joined = Some(done.reader(kind.clone()));
                }
            }
        }
    }
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `*` with q > 0).
fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation_follows_q_values() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }
}

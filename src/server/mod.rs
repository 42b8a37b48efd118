//! The HTTP side: `/metrics` (text 0.0.4 or OpenMetrics, gzip when asked), a landing page,
//! `/-/healthy` and `/-/ready`. Concurrent scrapes share one collection in flight. Never sees
//! XAPI wire data: it calls [`crate::collect::Pool::scrape`] and the encoder.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::net::TcpListener;

use crate::collect::Pool;
use crate::metrics::encode::{self, Format};
use crate::metrics::exposition::{Cursor, Exposition};

type Collection = Arc<Exposition>;
type InFlight = Arc<Mutex<Option<(u64, Shared<BoxFuture<'static, Collection>>)>>>;

/// What the handlers share.
#[derive(Debug)]
pub struct State {
    pool: Arc<Pool>,
    inflight: InFlight,
    next_generation: std::sync::atomic::AtomicU64,
    landing: String,
}

impl State {
    /// State for one pool; `description` is shown on the landing page (no secrets).
    pub fn new(pool: Arc<Pool>, description: &str) -> Arc<State> {
        Arc::new(State {
            pool,
            inflight: Arc::new(Mutex::new(None)),
            next_generation: std::sync::atomic::AtomicU64::new(0),
            landing: landing_page(description),
        })
    }

    /// The families of the collection in flight, or of a new one if none is running. The
    /// collection runs in its own task, so a scraper that disconnects does not cancel it for
    /// the others, and it clears the in-flight slot itself when done.
    pub async fn collect(&self) -> Collection {
        let shared = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some((_, shared)) => shared.clone(),
                None => {
                    let generation = self
                        .next_generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let pool = self.pool.clone();
                    let inflight = self.inflight.clone();
                    let task = tokio::spawn(async move {
                        let families = Arc::new(pool.scrape().await);
                        let mut slot = inflight.lock().unwrap_or_else(|e| e.into_inner());
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
                                Arc::new(Exposition::default())
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    *slot = Some((generation, shared.clone()));
                    shared
                }
            }
        };
        shared.await
    }
}

/// The routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in progress
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn landing(AxumState(state): AxumState<Arc<State>>) -> Html<String> {
    Html(state.landing.clone())
}

async fn ready(AxumState(state): AxumState<Arc<State>>) -> Response {
    if state.pool.is_ready() {
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
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = encode::negotiate(accept);
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let families = state.collect().await;
    let length = if gzip {
        0
    } else {
        families.encoded_len(format)
    };
    // Stream the exposition in chunks so that a large pool's text never sits whole in memory;
    // each chunk is a few thousand samples of CPU work, small enough for an async worker. The
    // encoder runs as its own task a few chunks ahead of the connection, so that encoding
    // the next chunk and sending the last one use both cores; it stops when the client goes.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_AHEAD);
    tokio::spawn(async move {
        let mut encoder = Encoder::new(families, format, gzip);
        while let Some(chunk) = encoder.next_chunk() {
            if sender.send(Bytes::from(chunk)).await.is_err() {
                break;
            }
        }
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
    } else {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// Size of the chunks an exposition is streamed in. Fewer, larger writes cut a 9 MiB
/// exposition's send time by a millisecond or two against 64 KiB (scrape bench, 8 × 250);
/// with two chunks ahead, at most about a megabyte of it is in memory at once.
const CHUNK: usize = 256 << 10;

/// Size of the compressed chunks: 64 KiB of output is about 256 KiB of text, a millisecond or
/// so of compression, about as long as an async worker should be held at a time.
const GZIP_CHUNK: usize = 64 << 10;

/// How many chunks the encoder may be ahead of the connection.
const CHUNKS_AHEAD: usize = 2;

/// Encodes a collection a chunk at a time, compressing when asked.
struct Encoder {
    exposition: Collection,
    cursor: Cursor,
    format: Format,
    gzip: Option<flate2::write::GzEncoder<Vec<u8>>>,
    done: bool,
    started: tokio::time::Instant,
    /// Time spent encoding (and compressing), as opposed to waiting for the client.
    busy: std::time::Duration,
    bytes: usize,
}

impl Encoder {
    fn new(exposition: Collection, format: Format, gzip: bool) -> Encoder {
        Encoder {
            exposition,
            cursor: Cursor::default(),
            format,
            gzip: gzip.then(|| {
                flate2::write::GzEncoder::new(
                    Vec::with_capacity(CHUNK),
                    flate2::Compression::fast(),
                )
            }),
            done: false,
            started: tokio::time::Instant::now(),
            busy: std::time::Duration::ZERO,
            bytes: 0,
        }
    }

    /// The next chunk of about [`CHUNK`] bytes, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let started = std::time::Instant::now();
        let chunk = self.encode_chunk();
        self.busy += started.elapsed();
        if self.done && chunk.is_some() {
            tracing::debug!(elapsed = ?self.started.elapsed(), encoding = ?self.busy, bytes = self.bytes, "Exposition encoded and sent");
        }
        chunk
    }

    fn encode_chunk(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        // Room for the line or family that crosses the limit.
        let mut text = Vec::with_capacity(CHUNK + (CHUNK >> 2));
        loop {
            let complete =
                self.exposition
                    .encode_some(&mut self.cursor, self.format, &mut text, CHUNK);
            self.bytes += text.len();
            if complete {
                self.done = true;
                return Some(match self.gzip.take() {
                    // Writing into a Vec cannot fail.
                    Some(mut gz) => {
                        let _ = gz.write_all(&text);
                        gz.finish().unwrap_or_default()
                    }
                    None => text,
                });
            }
            match &mut self.gzip {
                None => return Some(text),
                Some(gz) => {
                    let _ = gz.write_all(&text);
                    text.clear();
                    if gz.get_ref().len() >= GZIP_CHUNK {
                        return Some(std::mem::take(gz.get_mut()));
                    }
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

fn landing_page(description: &str) -> String {
    let description = html_escape(description);
    let version = env!("CARGO_PKG_VERSION");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>xen-exporter</title></head>\n\
         <body><h1>xen-exporter {version}</h1>\n<p>Prometheus exporter for XCP-ng and Citrix XenServer.</p>\n\
         <p>{description}</p>\n<ul><li><a href=\"metrics\">metrics</a></li>\
         <li><a href=\"-/healthy\">health</a></li><li><a href=\"-/ready\">readiness</a></li></ul>\n</body></html>\n"
    )
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn landing_page_escapes_its_description() {
        assert!(landing_page("<b>").contains("&lt;b&gt;"));
    }
}

//! Bounded load: the cap on collecting requests (`/metrics` and `/probe`) in flight
//! (`--web.max-requests`, answered 503 beyond it like node_exporter's), the token-bucket
//! `rate_limit` of the web configuration (429), and an I/O wrapper that drops a client which
//! stops reading its response.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::web_config::RateLimit;

/// At most `max` requests at once; `max` 0 admits everything.
#[derive(Debug)]
pub(crate) struct InFlight {
    slots: Option<Arc<Semaphore>>,
    max: usize,
}

impl InFlight {
    pub(crate) fn new(max: usize) -> InFlight {
        InFlight {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            max,
        }
    }

    /// A slot to hold until the response is sent, `Ok(None)` when there is no cap, or
    /// [`Busy`]. Refusing at once, rather than queueing, keeps a backlog from building up
    /// behind a slow pool; Prometheus retries at the next scrape.
    pub(crate) fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Busy> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        slots
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| Busy(self.max))
    }
}

/// Every slot is taken: 503 with node_exporter's message.
#[derive(Debug)]
pub(crate) struct Busy(usize);

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Limit of concurrent requests reached ({}), try again later.\n",
                self.0
            ),
        )
            .into_response()
    }
}

/// Go's `rate.Limiter` as exporter-toolkit uses it: a bucket of `burst` tokens, full at
/// first, refilled one per `interval`; a request takes one or is refused.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    bucket: Mutex<Option<(RateLimit, f64, Instant)>>,
}

impl RateLimiter {
    /// Whether a request may pass under `limit` (always, with none). A changed limit (after
    /// a reload) starts with a full bucket.
    pub(crate) fn allow(&self, limit: Option<RateLimit>) -> bool {
        let Some(limit) = limit else {
            return true;
        };
        let now = Instant::now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = match bucket.as_ref() {
            Some((l, tokens, last)) if *l == limit => (*tokens, *last),
            _ => (f64::from(limit.burst), now),
        };
        let refill = now.duration_since(last).as_secs_f64() / limit.interval.as_secs_f64();
        let tokens = (tokens + refill).min(f64::from(limit.burst));
        let (allowed, left) = if tokens >= 1.0 {
            (true, tokens - 1.0)
        } else {
            (false, tokens)
        };
        *bucket = Some((limit, left, now));
        allowed
    }
}

/// Wraps a connection so that a write which makes no progress for `limit` fails: a client that
/// stops reading would otherwise hold its connection, its buffers and its collecting slot for
/// as long as it likes. Reads pass through; hyper bounds those with its header timeout.
#[derive(Debug)]
pub(crate) struct StallGuard<IO> {
    io: IO,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> StallGuard<IO> {
    pub(crate) fn new(io: IO, limit: Duration) -> StallGuard<IO> {
        StallGuard {
            io,
            limit,
            stalled: None,
        }
    }

    /// Maps a pending write to an error once the stall has lasted `limit`.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading the response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_cap_refuses_beyond_max_and_frees_slots() {
        let cap = InFlight::new(2);
        let a = cap.admit().unwrap();
        let _b = cap.admit().unwrap();
        let refused = cap.admit().unwrap_err().into_response();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(a);
        assert!(cap.admit().is_ok());
        assert!(InFlight::new(0).admit().unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_one_per_interval() {
        let limiter = RateLimiter::default();
        let limit = Some(RateLimit {
            interval: Duration::from_secs(1),
            burst: 2,
        });
        assert!(limiter.allow(limit));
        assert!(limiter.allow(limit));
        assert!(!limiter.allow(limit));
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(limiter.allow(limit));
        assert!(!limiter.allow(limit));
        let none = Some(RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        });
        assert!(!limiter.allow(none));
        assert!(limiter.allow(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_drains_fails_after_the_limit() {
        // A duplex pipe with a tiny buffer that nobody reads: writes block forever.
        let (client, _unread) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(client, Duration::from_secs(5));
        let error = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}

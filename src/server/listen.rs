//! The listener: accepts connections, does the TLS handshake when the web configuration asks
//! for TLS, serves HTTP/1.1 with hyper under the read-header and stall timeouts, and puts
//! every request through the guard (rate limit, authentication, request timeout, the cap
//! on collecting requests, extra headers). Shutdown stops accepting and lets connections finish.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::auth::Authenticator;
use super::limits::{InFlight, RateLimiter, StallGuard};
use super::reload::Reloader;
use super::web_config::WebConfig;

/// How often, at most, the web configuration's files are looked at for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// The HTTP side's protection and limits, resolved.
#[derive(Debug, Clone)]
pub struct Limits {
    /// TLS handshake, request headers, keep-alive idle time.
    pub read_header_timeout: Duration,
    /// Request headers to response headers; also the longest write stall.
    pub request_timeout: Duration,
    /// Most collecting requests (`/metrics` and `/probe` together) at once (0: no limit).
    pub max_requests: usize,
}

/// Shared by the guard of every request.
#[derive(Debug)]
struct Guard {
    web: Arc<Reloader>,
    auth: Authenticator,
    rate: RateLimiter,
    in_flight: InFlight,
    request_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, protected by `web` (loaded from
/// `web_file`, which is watched for changes) and bounded by `limits`; then stops accepting and
/// lets requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: WebConfig,
    web_file: Option<PathBuf>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reloader = Arc::new(Reloader::new(web_file, web, RELOAD_CHECK));
    let guard = Arc::new(Guard {
        web: reloader.clone(),
        auth: Authenticator::default(),
        rate: RateLimiter::default(),
        in_flight: InFlight::new(limits.max_requests),
        request_timeout: limits.request_timeout,
    });
    let app = router.layer(axum::middleware::from_fn_with_state(guard, protect));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    connections.spawn(connection(
                        tcp,
                        app.clone(),
                        reloader.clone(),
                        limits.clone(),
                        stopped.clone(),
                    ));
                }
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "Cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    tcp: TcpStream,
    app: Router,
    web: Arc<Reloader>,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = web.current().tls.clone();
    match tls {
        None => http(tcp, app, &limits, stopped).await,
        Some(config) => {
            let handshake = tokio::time::timeout(
                limits.read_header_timeout,
                tokio_rustls::TlsAcceptor::from(config).accept(tcp),
            );
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                },
                _ = stopped.changed() => return,
            };
            http(stream, app, &limits, stopped).await;
        }
    }
}

async fn http<IO>(io: IO, app: Router, limits: &Limits, mut stopped: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(StallGuard::new(io, limits.request_timeout));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's header timer starts whenever it waits for a request head, so it also closes
    // keep-alive connections idle for that long (Go's net/http does the same when only
    // ReadHeaderTimeout is set).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "Connection closed with an error");
    }
}

/// Every request: rate limit, then (within the request timeout) authentication and the cap
/// on collecting requests, then the handler; extra headers on whatever the answer is.
async fn protect(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let web = guard.web.current();
    let mut response = if !guard.rate.allow(web.rate_limit) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else {
        match tokio::time::timeout(guard.request_timeout, admit(&guard, &web, request, next)).await
        {
            Ok(response) => response,
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "Request timed out\n").into_response(),
        }
    };
    let headers = response.headers_mut();
    for (name, value) in &web.headers {
        headers.entry(name).or_insert_with(|| value.clone());
    }
    response
}

async fn admit(guard: &Guard, web: &WebConfig, request: Request, next: Next) -> Response {
    if !guard
        .auth
        .check(&web.users, request.headers().get(header::AUTHORIZATION))
        .await
    {
        let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic"),
        );
        return response;
    }
    // Only the collecting endpoints are capped, under one limit: each response holds
    // buffers and a connection until its body is sent, whichever pool it is for. The other
    // endpoints cost nothing, and a liveness probe must not fail because Prometheus is busy.
    if !is_collecting(request.uri().path()) {
        return next.run(request).await;
    }
    let slot = match guard.in_flight.admit() {
        Ok(slot) => slot,
        Err(busy) => return busy.into_response(),
    };
    let response = next.run(request).await;
    // The slot is held until the body has been sent (or the connection dropped).
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &slot;
        chunk
    }));
    Response::from_parts(parts, body)
}

/// The endpoints whose responses carry a collection: `/metrics` (the pool, or the
/// exporter's own families with a configuration file) and `/probe` (one pool of the file).
fn is_collecting(path: &str) -> bool {
    matches!(path, "/metrics" | "/probe")
}

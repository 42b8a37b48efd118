//! The HTTP(S) front of each simulated host: loopback binding, fault injection, TLS, HTTP/1.1
//! keep-alive, routing to JSON-RPC, XML-RPC, `/rrd_updates` and the landing page.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use base64::Engine as _;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::HostFault;
use super::events::Outcome;
use super::rpc;
use super::rrd::{self, RenderCtx, RrdError, RrdQuery};
use super::state::Shared;
use super::wire;

const MAX_BODY: usize = 16 << 20;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds host i on 127.A.B.(i+1), every host on the master's port; retries with another
/// A.B when any bind fails.
pub(super) async fn bind_all(n: usize) -> std::io::Result<(Vec<TcpListener>, Vec<Ipv4Addr>, u16)> {
    static INSTANCE: AtomicU64 = AtomicU64::new(0);
    let pid = u64::from(std::process::id());
    let mut last_err = None;
    for _ in 0..32 {
        let k = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let x = super::rng::mix((pid << 32) ^ k);
        // A in 100..=250 keeps clear of 127.0.0.1 and of the usual 127.0.x.y helpers.
        let a = 100 + (x % 151) as u8;
        let b = (x >> 16) as u8;
        let ips: Vec<Ipv4Addr> = (0..n)
            .map(|i| Ipv4Addr::new(127, a, b, (i + 1) as u8))
            .collect();
        let master = match TcpListener::bind((ips[0], 0)).await {
            Ok(l) => l,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        let port = master.local_addr()?.port();
        let mut listeners = vec![master];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        if listeners.len() == n {
            return Ok((listeners, ips, port));
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free loopback address")))
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means "stop".
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accept loop of one host.
pub(super) async fn serve_host(
    shared: Arc<Shared>,
    host: usize,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = wait_shutdown(&mut shutdown) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match shared.fault(host) {
            HostFault::Refuse => {
                drop(stream);
                continue;
            }
            HostFault::Hang => {
                tokio::spawn(hold(Arc::clone(&shared), host, stream, shutdown.clone()));
                continue;
            }
            _ => {}
        }
        tokio::spawn(connection(
            Arc::clone(&shared),
            host,
            stream,
            peer,
            shutdown.clone(),
        ));
    }
}

/// Keeps a connection open without answering, draining what the client sends, until the
/// hang is lifted or the simulator stops; then closes it.
async fn hold(
    shared: Arc<Shared>,
    host: usize,
    mut stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let lifted = shared.lifted(host, HostFault::Hang);
    tokio::pin!(lifted);
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            () = &mut lifted => return,
            _ = wait_shutdown(&mut shutdown) => return,
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    host: usize,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let impostor = shared.lock().impostors.get(host).copied().unwrap_or(false);
    let acceptor = shared.tls.as_ref().and_then(|t| {
        if impostor {
            t.impostors.get(host).cloned()
        } else {
            t.acceptors.get(host).cloned()
        }
    });
    match acceptor {
        Some(acceptor) => {
            let Ok(Ok(tls)) =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let client_cert = match (
                shared.tls.as_ref().and_then(|t| t.client_check.as_ref()),
                tls.get_ref().1.peer_certificates(),
            ) {
                (Some(check), Some(chain)) if host == 0 => {
                    super::tls::client_cert_verified(check.as_ref(), chain)
                }
                _ => false,
            };
            serve_io(shared, host, peer, client_cert, tls, shutdown).await;
        }
        None => serve_io(shared, host, peer, false, stream, shutdown).await,
    }
}

async fn serve_io<I>(
    shared: Arc<Shared>,
    host: usize,
    peer: SocketAddr,
    client_cert: bool,
    io: I,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sd = shutdown.clone();
    let svc = service_fn(move |req| {
        handle(
            Arc::clone(&shared),
            host,
            peer,
            client_cert,
            req,
            sd.clone(),
        )
    });
    let conn = http1::Builder::new()
        .title_case_headers(true)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = wait_shutdown(&mut shutdown) => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    host: usize,
    peer: SocketAddr,
    client_cert: bool,
    req: Request<Incoming>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Response<Body>, std::io::Error> {
    match shared.fault(host) {
        HostFault::Refuse => return Err(std::io::Error::other("simulated refusal")),
        HostFault::Hang => {
            tokio::select! {
                () = shared.lifted(host, HostFault::Hang) => {}
                () = wait_shutdown(&mut shutdown) => {}
            }
            return Err(std::io::Error::other("simulated hang"));
        }
        HostFault::Hold => {
            tokio::select! {
                () = shared.lifted(host, HostFault::Hold) => {}
                () = wait_shutdown(&mut shutdown) => {
                    return Err(std::io::Error::other("simulator shut down"));
                }
            }
        }
        HostFault::Delay(d) => tokio::time::sleep(d).await,
        HostFault::None | HostFault::Http500 => {}
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let resp = match (&parts.method, path) {
        (&Method::GET, "/rrd_updates") => {
            rrd_updates(&shared, host, peer, parts.uri.query(), &parts.headers)
        }
        (&Method::GET | &Method::HEAD, "/") => landing_page(),
        (&Method::POST, _) => {
            let bytes = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return Ok(error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not read the request body",
                    ));
                }
            };
            let reply = if path == "/jsonrpc" {
                json_rpc(&shared, host, client_cert, &bytes, &parts.headers).await
            } else {
                // xapi sends every other POST path to the XML-RPC handler.
                xml_rpc(&shared, host, client_cert, &bytes, &parts.headers).await
            };
            // A service error makes hyper drop the connection without writing a response.
            reply.ok_or_else(|| std::io::Error::other("simulated event stream cut"))?
        }
        _ => error_page(StatusCode::NOT_FOUND, path),
    };
    Ok(resp)
}

fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: String,
) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static(ct));
    }
    r
}

/// xapi's small HTML error pages (http_svr.ml).
fn error_page(status: StatusCode, detail: &str) -> Response<Body> {
    let (title, text) = match status.as_u16() {
        400 => (
            "400 Bad Request",
            "The HTTP request was malformed. Please correct and retry.",
        ),
        401 => (
            "401 Unauthorised",
            "Authorisation failed. Please supply valid credentials.",
        ),
        403 => ("403 Forbidden", "The operation is forbidden for this user."),
        404 => (
            "404 Not Found",
            "The requested URL was not found on this server.",
        ),
        _ => (
            "500 Internal Error",
            "An unexpected error occurred; please wait a while and try again. If the problem persists, please contact your support representative.",
        ),
    };
    let mut escaped = String::new();
    wire::push_xml_text(&mut escaped, detail);
    let body = format!(
        "<html><body><h1>HTTP {title}</h1>{text}<h1> Additional information </h1>{escaped}</body></html>"
    );
    response(status, Some("text/html"), body)
}

fn landing_page() -> Response<Body> {
    // XCP-ng 8.3 serves XO Lite here; a placeholder with the same role is enough.
    let body = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>XO Lite</title></head>\
                <body><div id=\"root\">XCP-ng (XAPI simulator)</div></body></html>";
    response(StatusCode::OK, Some("text/html"), body.to_string())
}

fn add_thumbprint_header(
    shared: &Shared,
    err: &[String],
    headers: &HeaderMap,
    resp: &mut Response<Body>,
) {
    // xapi ≥ 24.1: a client pinning certificates can learn the master's fingerprint.
    let asks = headers
        .get("x-xenapi-request-host-certificate-thumbprint")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("sha-256:master"));
    if asks
        && err.first().is_some_and(|c| c == "HOST_IS_SLAVE")
        && let Some(fp) = shared.tls.as_ref().and_then(|t| t.fingerprints.first())
        && let Ok(v) = HeaderValue::from_str(fp)
    {
        resp.headers_mut()
            .insert("x-xenapi-response-host-certificate-thumbprint", v);
    }
}

/// `None` = close the connection without a response.
async fn json_rpc(
    shared: &Shared,
    host: usize,
    client_cert: bool,
    body: &[u8],
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let bad = |why: &str| Some(error_page(StatusCode::INTERNAL_SERVER_ERROR, why));
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(body) else {
        return bad("JSON-RPC request is not valid JSON");
    };
    let Some(obj) = req.as_object() else {
        return bad("JSON-RPC request is not an object");
    };
    let id = match obj.get("id") {
        Some(id @ (serde_json::Value::String(_) | serde_json::Value::Number(_))) => id,
        // Notifications (no id or null id) are not supported by xapi.
        _ => return bad("JSON-RPC request without a usable id"),
    };
    let v2 = obj.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0");
    let Some(method) = obj.get("method").and_then(|m| m.as_str()) else {
        return bad("JSON-RPC request without a method");
    };
    let params: Vec<wire::V> = match obj.get("params") {
        Some(serde_json::Value::Array(a)) => a.iter().map(wire::V::from_json).collect(),
        None if v2 => Vec::new(),
        _ => return bad("JSON-RPC request without a params array"),
    };
    let Outcome::Reply(outcome) = rpc::call(shared, host, client_cert, method, &params).await
    else {
        return None;
    };
    let id_text = id.to_string();
    let mut out = String::with_capacity(256);
    match (&outcome, v2) {
        (Ok(v), true) => {
            out.push_str("{\"jsonrpc\":\"2.0\",\"result\":");
            v.write_json(&mut out);
        }
        (Ok(v), false) => {
            out.push_str("{\"result\":");
            v.write_json(&mut out);
            out.push_str(",\"error\":null");
        }
        (Err(e), true) => {
            out.push_str("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":1,\"message\":");
            wire::push_json_string(&mut out, e.first().map_or("INTERNAL_ERROR", String::as_str));
            out.push_str(",\"data\":");
            wire::V::strings(e.iter().skip(1).cloned()).write_json(&mut out);
            out.push('}');
        }
        (Err(e), false) => {
            out.push_str("{\"result\":null,\"error\":");
            wire::V::strings(e.iter().cloned()).write_json(&mut out);
        }
    }
    out.push_str(",\"id\":");
    out.push_str(&id_text);
    out.push('}');
    let mut resp = response(StatusCode::OK, Some("application/json"), out);
    if let Err(e) = &outcome {
        add_thumbprint_header(shared, e, headers, &mut resp);
    }
    Some(resp)
}

/// `None` = close the connection without a response.
async fn xml_rpc(
    shared: &Shared,
    host: usize,
    client_cert: bool,
    body: &[u8],
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let (method, params) = {
        // Not held across the await below: the future must stay Send.
        let text = String::from_utf8_lossy(body);
        match wire::parse_method_call(&text) {
            Ok(x) => x,
            Err(why) => return Some(error_page(StatusCode::INTERNAL_SERVER_ERROR, &why)),
        }
    };
    let Outcome::Reply(outcome) = rpc::call(shared, host, client_cert, &method, &params).await
    else {
        return None;
    };
    let out = match &outcome {
        Ok(v) => wire::xml_success(v),
        Err(e) => wire::xml_failure(e),
    };
    let mut resp = response(StatusCode::OK, Some("text/xml"), out);
    resp.headers_mut()
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    if let Err(e) = &outcome {
        add_thumbprint_header(shared, e, headers, &mut resp);
    }
    Some(resp)
}

/// Decodes `k=v&k2=v2` the way xapi's http-lib does (`+` is a space, `%XX` a byte).
pub(super) fn decode_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sanitize_query(q: &str) -> String {
    q.split('&')
        .map(|kv| {
            if kv.split('=').next() == Some("session_id") {
                "session_id=<session>"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "session_id")
        .map(|(_, v)| v.to_string())
}

fn unauthorised(shared: &Shared) -> Response<Body> {
    shared.lock().counters.rrd_unauthorised += 1;
    let mut r = error_page(StatusCode::UNAUTHORIZED, "rrd_updates");
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Basic realm=\"rrd_updates\""),
    );
    r
}

fn rrd_updates(
    shared: &Shared,
    host: usize,
    peer: SocketAddr,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let raw = query.unwrap_or("");
    shared.lock().record_rrd_query(host, sanitize_query(raw));
    if shared.fault(host) == HostFault::Http500 {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "simulated failure");
    }
    let pairs = decode_query(raw);
    let idle = shared.config.session_idle_timeout;

    // Authentication, in xapi's order: session cookie, session query, Basic.
    let session = cookie_session(headers).or_else(|| {
        pairs
            .iter()
            .find(|(k, _)| k == "session_id")
            .map(|(_, v)| v.clone())
    });
    let mut temp_sessions: Vec<String> = Vec::new();
    if let Some(s) = session {
        if !shared.lock().touch_session(&s, idle) {
            return unauthorised(shared);
        }
    } else if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let Some(b64) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
        else {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unsupported Authorization scheme",
            );
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let ok = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .is_some_and(|(u, p)| u == shared.config.username && p == shared.config.password);
        if !ok {
            return unauthorised(shared);
        }
        // xapi logs in twice per Basic-auth request (RBAC check + context) and logs both
        // sessions out afterwards; they count in pool_session_count meanwhile.
        let now = shared.now();
        let originator = format!("{} using Basic auth", peer.ip());
        let mut st = shared.lock();
        st.counters.rrd_basic_auth += 1;
        temp_sessions.push(st.create_session(&originator, now));
        temp_sessions.push(st.create_session(&originator, now));
    } else {
        return unauthorised(shared);
    }

    let resp = rrd_body(shared, host, &pairs, headers);
    if !temp_sessions.is_empty() {
        let mut st = shared.lock();
        for s in &temp_sessions {
            st.destroy_session(s);
        }
    }
    resp
}

fn rrd_body(
    shared: &Shared,
    host: usize,
    pairs: &[(String, String)],
    headers: &HeaderMap,
) -> Response<Body> {
    let query = match RrdQuery::parse(pairs, shared.config.vm_uuid_filter) {
        Ok(q) => q,
        Err(RrdError::MissingStart) => return error_page(StatusCode::BAD_REQUEST, "missing start"),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:?}")),
    };
    let generation = shared.config.generation;
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    let Ok(format) = rrd::choose_format(generation, query.json, accept) else {
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Accept header could not be parsed",
        );
    };
    let now = shared.now();
    let (layout, ctx) = {
        let mut st = shared.lock();
        let layout = st.layout(host);
        let phase = st.model.hosts[host].rrd_phase;
        let is_master = host == st.model.pool.master;
        let live = st.live_sessions(shared.config.session_idle_timeout);
        let ctx = RenderCtx {
            // The 5 s update loop runs at `phase` past each multiple of 5.
            last_updated: now - (now - phase).rem_euclid(5),
            format,
            style: rrd::num_style(generation),
            nan_ratio: shared.config.nan_ratio,
            live_sessions: live,
            login_times: if is_master {
                st.login_times()
            } else {
                Vec::new()
            },
        };
        (layout, ctx)
    };
    let rendered = match rrd::render(&layout, &query, &ctx) {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:?}")),
    };
    {
        let mut st = shared.lock();
        if let Some(slot) = st.last_rrd.get_mut(host) {
            *slot = rendered.newest;
        }
        if let Some(bytes) = st.counters.rrd_bytes.get_mut(host) {
            *bytes += rendered.body.len() as u64;
        }
    }
    let mut resp = response(
        StatusCode::OK,
        format.content_type(generation),
        rendered.body,
    );
    let h = resp.headers_mut();
    h.insert(
        "cache-control",
        HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("X-Requested-With"),
    );
    // xcp-rrdd serves one response per connection.
    h.insert("connection", HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding_and_sanitising() {
        assert_eq!(
            decode_query("start=-10&session_id=OpaqueRef%3Aabc&json&x=a+b%2"),
            vec![
                ("start".into(), "-10".into()),
                ("session_id".into(), "OpaqueRef:abc".into()),
                ("json".into(), "".into()),
                ("x".into(), "a b%2".into()),
            ]
        );
        assert_eq!(
            sanitize_query("start=1&session_id=OpaqueRef:x&host=true"),
            "start=1&session_id=<session>&host=true"
        );
    }
}

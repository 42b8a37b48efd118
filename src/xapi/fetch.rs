//! One `GET` on a connection of its own, for `/rrd_updates`: TCP, TLS with the pool's
//! verifier, one HTTP/1.1 exchange through hyper, then close, as xcp-rrdd does after each
//! reply whatever it announced.
//!
//! Not through the RPC client: its HTTP stack lets hyper's read buffer grow to hyper's
//! default maximum on each connection, held by every host fetched at once, and lets rustls
//! read the socket in its own small reads, a system call each. Here both are bounded.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, CONNECTION, HOST};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Error, MAX_BODY, chain_text};
use crate::config::{Endpoint, Scheme};

/// Bytes read from the socket at a time, under TLS.
const SOCKET_READ: usize = 64 * 1024;
/// hyper's read buffer, at most.
const HTTP_READ: usize = 64 * 1024;

/// What a `GET` brought back.
pub(super) enum Reply {
    /// A 200's body.
    Body(Vec<u8>),
    /// Any other status; its body is not read.
    Status(u16),
}

/// Makes one-shot `GET`s with one TLS configuration.
pub(super) struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    pub(super) fn new(tls: rustls::ClientConfig, connect_timeout: Duration) -> Fetcher {
        Fetcher {
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)),
            connect_timeout,
        }
    }

    /// `GET path` (with its query) from `host`, all of it by `deadline`.
    pub(super) async fn get(
        &self,
        host: &Endpoint,
        path: &str,
        accept: &'static str,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let connect_by = deadline.min(Instant::now() + self.connect_timeout);
        let exchange = async {
            let tcp = tokio::time::timeout_at(
                connect_by,
                TcpStream::connect((host.host.as_str(), host.port)),
            )
            .await
            .map_err(|_| Error::Timeout(self.connect_timeout))?
            .map_err(|e| Error::Connect(chain_text(&e)))?;
            let _ = tcp.set_nodelay(true);
            let tcp = BufReader::with_capacity(SOCKET_READ, tcp);
            let request = hyper::Request::get(path)
                .header(HOST, host.authority())
                .header(ACCEPT, accept)
                .header(CONNECTION, "close")
                .body(Empty::<Bytes>::new())
                .map_err(|e| Error::Transport(e.to_string()))?;
            match host.scheme {
                Scheme::Http => send(tcp, request).await,
                Scheme::Https => {
                    let name = rustls::pki_types::ServerName::try_from(host.host.clone())
                        .map_err(|e| Error::Connect(e.to_string()))?;
                    let tls = tokio::time::timeout_at(connect_by, self.tls.connect(name, tcp))
                        .await
                        .map_err(|_| Error::Timeout(self.connect_timeout))?
                        .map_err(|e| Error::tls_or(&e, Error::Connect))?;
                    send(tls, request).await
                }
            }
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }
}

/// The exchange on an open connection: the request, the status, and a 200's body.
async fn send<IO>(io: IO, request: hyper::Request<Empty<Bytes>>) -> Result<Reply, Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HTTP_READ)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::tls_or(&e, Error::Transport))?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Error::tls_or(&e, Error::Transport))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Ok(Reply::Status(status));
        }
        let hint = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let mut incoming = response.into_body();
        let mut body = Vec::with_capacity(hint.min(MAX_BODY));
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| Error::tls_or(&e, Error::Transport))?;
            if let Some(chunk) = frame.data_ref() {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(Error::Decode(format!("body larger than {MAX_BODY} bytes")));
                }
                body.extend_from_slice(chunk);
            }
        }
        Ok(Reply::Body(body))
    };
    // The connection moves the bytes of the exchange; it ends with it, or fails first (and
    // the exchange then fails too).
    let mut exchange = std::pin::pin!(exchange);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        reply = &mut exchange => reply,
        _ = &mut connection => exchange.await,
    }
}

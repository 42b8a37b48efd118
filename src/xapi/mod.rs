//! Talks to one XAPI pool: one long-lived session on the master (JSON-RPC at `/jsonrpc`),
//! `HOST_IS_SLAVE` redirects, re-login on `SESSION_INVALID` or HTTP 401, and `/rrd_updates`
//! per host with that session. Knows nothing about Prometheus.

mod fetch;
pub mod records;
pub mod rpc;
pub mod rrd;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{Endpoint, PoolConfig, Secret};
use rpc::Decoded;
pub use rpc::Failure;

/// The originator sent with every login. XAPI groups sessions per originator when it evicts
/// old ones, so a distinctive value keeps us from pushing out other tools' sessions.
pub const ORIGINATOR: &str = concat!("xen-exporter/", env!("CARGO_PKG_VERSION"));

/// How many `HOST_IS_SLAVE` redirects one login follows before giving up.
const MAX_REDIRECTS: usize = 4;

/// The `vm_uuid` filter of an `/rrd_updates` request that wants no VM: the nil UUID, which
/// no VM has. xapi before 26.7 takes an unknown UUID as "none", from 26.7 each value is a literal
/// UUID (wire-format reference §1.3), so it selects no VM on both; `none` would too, but a
/// well-formed UUID stays valid should xapi ever check the syntax.
const NO_VMS: &str = "&vm_uuid=00000000-0000-0000-0000-000000000000";

/// The largest `/rrd_updates` body accepted; a host with thousands of VMs sends a few MiB.
const MAX_BODY: usize = 256 << 20;

/// Why a XAPI request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// TCP connection failed (refused, unreachable, reset before a reply).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The TLS handshake failed, e.g. an untrusted certificate.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// An HTTP status other than 200.
    #[error("HTTP status {status}")]
    Http {
        /// The status code.
        status: u16,
    },
    /// XAPI answered with an API error.
    #[error("XAPI error {} {:?}", .0.code, .0.params)]
    Api(Failure),
    /// The reply could not be decoded.
    #[error("malformed reply: {0}")]
    Decode(String),
    /// Any other transport failure.
    #[error("request failed: {0}")]
    Transport(String),
}

/// Why a request failed, in a closed vocabulary: the `reason` of the error counters and of
/// log lines, and the `outcome` of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No answer within the deadline.
    Timeout,
    /// The TCP connection failed.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// HTTP 401 or 403, or bad credentials.
    Auth,
    /// A `SESSION_*` API error other than bad credentials.
    Session,
    /// Another 4xx status.
    Http4xx,
    /// A 5xx status.
    Http5xx,
    /// Another API error.
    ApiError,
    /// A reply that could not be decoded.
    Parse,
    /// Any other transport failure.
    Transport,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 10] = [
        Reason::Timeout,
        Reason::Connect,
        Reason::Tls,
        Reason::Auth,
        Reason::Session,
        Reason::Http4xx,
        Reason::Http5xx,
        Reason::ApiError,
        Reason::Parse,
        Reason::Transport,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Auth => "auth",
            Reason::Session => "session",
            Reason::Http4xx => "http_4xx",
            Reason::Http5xx => "http_5xx",
            Reason::ApiError => "api_error",
            Reason::Parse => "parse",
            Reason::Transport => "transport",
        }
    }
}

impl Error {
    /// Why, in the closed vocabulary of metric labels.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Timeout(_) => Reason::Timeout,
            Error::Connect(_) => Reason::Connect,
            Error::Tls(_) => Reason::Tls,
            Error::Http { status: 401 | 403 } => Reason::Auth,
            Error::Http { status } if *status >= 500 => Reason::Http5xx,
            Error::Http { .. } => Reason::Http4xx,
            Error::Api(f) if f.code == "SESSION_AUTHENTICATION_FAILED" => Reason::Auth,
            Error::Api(f) if f.code.starts_with("SESSION_") => Reason::Session,
            Error::Api(_) => Reason::ApiError,
            Error::Decode(_) => Reason::Parse,
            Error::Transport(_) => Reason::Transport,
        }
    }

    fn from_reqwest(err: reqwest::Error, timeout: Duration) -> Error {
        // The URL of an /rrd_updates request carries the session id: never let it into a
        // message.
        let err = err.without_url();
        if err.is_timeout() {
            return Error::Timeout(timeout);
        }
        let other = if err.is_connect() {
            Error::Connect
        } else {
            Error::Transport
        };
        Error::tls_or(&err, other)
    }

    /// A TLS refusal as [`Error::Tls`], anything else as `other` with its chain of causes.
    fn tls_or(err: &(dyn std::error::Error + 'static), other: fn(String) -> Error) -> Error {
        match find_rustls(err) {
            // Our verifiers' refusals carry the whole story (host, fingerprints).
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(why))) => {
                Error::Tls(why.to_string())
            }
            Some(tls) => Error::Tls(tls.to_string()),
            None => other(chain_text(err)),
        }
    }
}

/// The rustls error behind a failed request. tokio-rustls and hyper wrap it in io::Errors,
/// whose `source()` skips the wrapped error itself, so those are opened with `get_ref()`.
fn find_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn chain_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, Default)]
struct SessionState {
    session: Option<Arc<str>>,
    /// Bumped by every login, so that concurrent failures caused by one expired session
    /// lead to exactly one new login.
    generation: u64,
}

/// A session reference and the login generation it belongs to.
#[derive(Debug, Clone)]
struct Session {
    id: Arc<str>,
    generation: u64,
}

/// A client for one pool. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Client {
    rpc_http: reqwest::Client,
    rrd_http: fetch::Fetcher,
    /// `event.from` long polls park a request for up to a minute: they get their own
    /// connection so that they never queue scrape-time calls behind them.
    event_http: reqwest::Client,
    endpoint: Endpoint,
    trust: Arc<tls::Trust>,
    master: RwLock<Endpoint>,
    user: String,
    password: Secret,
    timeout: Duration,
    state: Mutex<SessionState>,
    login_lock: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    logged_in_once: AtomicBool,
    /// Other members to ask for the master: configured ones, then those the inventory knows.
    members: RwLock<Vec<Endpoint>>,
    /// Logins that landed on a different master than the previous session's.
    failovers: AtomicU64,
    /// Requests by (kind, outcome): count and seconds spent.
    stats: Mutex<BTreeMap<StatsKey, (u64, f64)>>,
    /// `--collector.vm-rrd`: whether `/rrd_updates` asks for the VMs' RRDs.
    vm_rrd: bool,
}

/// (kind, outcome) of a request.
type StatsKey = (&'static str, &'static str);

/// What one kind of XAPI request cost so far, for the exporter's own metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestStats {
    /// `login`, `logout`, `call`, `event`, `rrd`.
    pub kind: &'static str,
    /// `ok` or a bounded error reason.
    pub outcome: &'static str,
    /// Requests.
    pub count: u64,
    /// Seconds spent in them.
    pub seconds: f64,
}

impl Client {
    /// Builds a client; no network traffic until the first call.
    pub fn new(config: &PoolConfig) -> Result<Client, String> {
        let (tls, trust) = tls::client_config(&config.tls)?;
        let rpc_http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(50))
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client setup failed: {e}"))?;
        // xcp-rrdd closes the connection after each /rrd_updates reply although it says
        // keep-alive; reusing such a connection fails sporadically, so never pool them.
        let event_http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .pool_idle_timeout(Duration::from_secs(50))
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client setup failed: {e}"))?;
        let rrd_http = fetch::Fetcher::new(tls, config.timeout);
        Ok(Client {
            rpc_http,
            rrd_http,
            event_http,
            endpoint: config.endpoint.clone(),
            trust,
            master: RwLock::new(config.endpoint.clone()),
            user: config.user.clone(),
            password: config.password.clone(),
            timeout: config.timeout,
            state: Mutex::new(SessionState::default()),
            login_lock: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            logged_in_once: AtomicBool::new(false),
            members: RwLock::new(config.members.clone()),
            failovers: AtomicU64::new(0),
            stats: Mutex::new(BTreeMap::new()),
            vm_rrd: config.collectors.vm_rrd,
        })
    }

    /// The configured endpoint (XEN_HOST).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How certificates are checked, learned member pins and presented certificates.
    pub fn trust(&self) -> &tls::Trust {
        &self.trust
    }

    /// The master as last learned from a login.
    pub fn master(&self) -> Endpoint {
        self.master
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How a pool member at `address` (its `host.address`) is reached: the configured scheme
    /// and port.
    pub fn member(&self, address: &str) -> Endpoint {
        self.endpoint.with_host(address)
    }

    /// Adds pool members (their `host.address`, reached like XEN_HOST) to ask for the master
    /// should it stop answering; the configured ones stay first.
    pub fn learn_members(&self, addresses: impl IntoIterator<Item = String>) {
        let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
        for address in addresses {
            // A host record without an address (being added to the pool) is no candidate.
            if address.trim().is_empty() {
                continue;
            }
            let endpoint = self.endpoint.with_host(&address);
            if endpoint != self.endpoint && !members.contains(&endpoint) {
                members.push(endpoint);
            }
        }
    }

    /// Times the session moved to a new master.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Request counts and durations so far.
    pub fn request_stats(&self) -> Vec<RequestStats> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats
            .iter()
            .map(|(&(kind, outcome), &(count, seconds))| RequestStats {
                kind,
                outcome,
                count,
                seconds,
            })
            .collect()
    }

    fn record<T>(&self, kind: &'static str, started: Instant, result: &Result<T, Error>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.reason().as_str(),
        };
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let entry = stats.entry((kind, outcome)).or_default();
        entry.0 += 1;
        entry.1 += started.elapsed().as_secs_f64();
    }

    /// Whether a login has ever succeeded (readiness).
    pub fn has_logged_in(&self) -> bool {
        self.logged_in_once.load(Ordering::Relaxed)
    }

    fn current_session(&self) -> Option<Session> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.session.as_ref().map(|id| Session {
            id: id.clone(),
            generation: state.generation,
        })
    }

    async fn session(&self) -> Result<Session, Error> {
        if let Some(session) = self.current_session() {
            return Ok(session);
        }
        let _guard = self.login_lock.lock().await;
        if let Some(session) = self.current_session() {
            return Ok(session);
        }
        self.login().await
    }

    /// Logs in again unless another task already did after `stale` failed.
    async fn relogin(&self, stale: &Session) -> Result<Session, Error> {
        self.relogin_from(stale, false).await
    }

    /// Like [`Client::relogin`], after the master failed to answer: the other members are
    /// asked first.
    async fn relogin_elsewhere(&self, stale: &Session) -> Result<Session, Error> {
        self.relogin_from(stale, true).await
    }

    async fn relogin_from(&self, stale: &Session, master_failed: bool) -> Result<Session, Error> {
        let _guard = self.login_lock.lock().await;
        if let Some(session) = self.current_session()
            && session.generation != stale.generation
        {
            return Ok(session);
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.generation == stale.generation {
                state.session = None;
            }
        }
        self.login_from(master_failed).await
    }

    /// Logs in, following `HOST_IS_SLAVE` to the master. Callers hold `login_lock`.
    async fn login(&self) -> Result<Session, Error> {
        self.login_from(false).await
    }

    /// Logs in, trying the last known master first, or last when it just failed
    /// (`master_failed`), then the configured endpoint and every other known member: any of
    /// them names the master with `HOST_IS_SLAVE`, or is the master now.
    async fn login_from(&self, master_failed: bool) -> Result<Session, Error> {
        let previous = self.master();
        let mut candidates = vec![previous.clone(), self.endpoint.clone()];
        candidates.extend(
            self.members
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let mut seen = Vec::with_capacity(candidates.len());
        candidates.retain(|c| {
            let new = !seen.contains(c);
            seen.push(c.clone());
            new
        });
        if master_failed {
            candidates.rotate_left(1);
        }
        let mut last_error = None;
        'candidates: for start in candidates {
            let mut target = start;
            for _ in 0..MAX_REDIRECTS {
                let params = [
                    Value::from(self.user.as_str()),
                    Value::from(self.password.expose()),
                    Value::from("1.0"),
                    Value::from(ORIGINATOR),
                ];
                match self
                    .rpc::<String>(&target, "session.login_with_password", &params)
                    .await
                {
                    Ok(Decoded::Ok(session)) => {
                        let generation = {
                            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                            state.generation += 1;
                            state.session = Some(Arc::from(session.as_str()));
                            state.generation
                        };
                        *self.master.write().unwrap_or_else(|e| e.into_inner()) = target.clone();
                        if self.logged_in_once.swap(true, Ordering::Relaxed) && target != previous {
                            self.failovers.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(from = %previous, to = %target, "The pool master changed; following it");
                        }
                        tracing::info!(master = %target, user = %self.user, "Logged in to XAPI");
                        return Ok(Session {
                            id: Arc::from(session.as_str()),
                            generation,
                        });
                    }
                    Ok(Decoded::Failure(f)) if f.code == "HOST_IS_SLAVE" => {
                        let Some(address) = f.params.first().filter(|a| !a.trim().is_empty())
                        else {
                            last_error = Some(Error::Api(f));
                            continue 'candidates;
                        };
                        tracing::info!(member = %target, master = %address, "Host is a pool member; following to the master");
                        target = self.endpoint.with_host(address);
                    }
                    Ok(Decoded::Failure(f)) => return Err(Error::Api(f)),
                    Err(e) => {
                        last_error = Some(e);
                        continue 'candidates;
                    }
                }
            }
            last_error = Some(Error::Decode("too many HOST_IS_SLAVE redirects".into()));
        }
        Err(last_error.unwrap_or(Error::Decode("no master to log in to".into())))
    }

    /// One JSON-RPC request to `target`, without session handling.
    async fn rpc<T: DeserializeOwned>(
        &self,
        target: &Endpoint,
        method: &str,
        params: &[Value],
    ) -> Result<Decoded<T>, Error> {
        self.rpc_on(&self.rpc_http, self.timeout, target, method, params)
            .await
    }

    async fn rpc_on<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        target: &Endpoint,
        method: &str,
        params: &[Value],
    ) -> Result<Decoded<T>, Error> {
        let started = Instant::now();
        let result = self
            .rpc_unrecorded(http, timeout, target, method, params)
            .await;
        let kind = match method {
            "session.login_with_password" => "login",
            "session.logout" => "logout",
            "event.from" => "event",
            _ => "call",
        };
        let outcome = match &result {
            Ok(Decoded::Failure(f)) => Err(Error::Api(f.clone())),
            Ok(Decoded::Ok(_)) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        self.record(kind, started, &outcome);
        result
    }

    async fn rpc_unrecorded<T: DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        target: &Endpoint,
        method: &str,
        params: &[Value],
    ) -> Result<Decoded<T>, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = rpc::encode_request(method, params, id);
        let url = format!("{}/jsonrpc", target.base_url());
        let response = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| Error::from_reqwest(e, timeout))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Error::Http { status });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::from_reqwest(e, timeout))?;
        rpc::decode_response(&bytes).map_err(Error::Decode)
    }

    /// Calls `method` on the master with the session prepended to `params`, logging in first
    /// if needed and once more if the session turns out to be invalid.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &[Value],
    ) -> Result<T, Error> {
        let mut session = self.session().await?;
        for attempt in 0..2 {
            let mut full = Vec::with_capacity(params.len() + 1);
            full.push(Value::from(&*session.id));
            full.extend_from_slice(params);
            let master = self.master();
            let reply = match self.rpc::<T>(&master, method, &full).await {
                Ok(reply) => reply,
                Err(error) if attempt == 0 && master_unreachable(&error) => {
                    tracing::warn!(master = %master, %error, "The pool master does not answer; asking the other members who the master is");
                    session = self.relogin_elsewhere(&session).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match reply {
                Decoded::Ok(value) => return Ok(value),
                Decoded::Failure(f)
                    if attempt == 0
                        && (f.code == "SESSION_INVALID" || f.code == "HOST_IS_SLAVE") =>
                {
                    if f.code == "HOST_IS_SLAVE"
                        && let Some(address) = f.params.first()
                    {
                        *self.master.write().unwrap_or_else(|e| e.into_inner()) =
                            self.endpoint.with_host(address);
                    }
                    tracing::info!(code = %f.code, method, "XAPI session no longer valid; logging in again");
                    session = self.relogin(&session).await?;
                }
                Decoded::Failure(f) => return Err(Error::Api(f)),
            }
        }
        Err(Error::Decode("session invalid right after login".into()))
    }

    /// A getter of our own session's record, e.g. `get_is_local_superuser`: XAPI lets every
    /// role read its session's fields.
    pub async fn session_field<T: DeserializeOwned>(&self, getter: &str) -> Result<T, Error> {
        let session = self.session().await?;
        self.call(&format!("session.{getter}"), &[Value::from(&*session.id)])
            .await
    }

    /// `<class>.get_all_records`.
    pub async fn all_records<R: DeserializeOwned>(
        &self,
        class: &str,
    ) -> Result<records::Records<R>, Error> {
        self.call(&format!("{class}.get_all_records"), &[]).await
    }

    /// `event.from(classes, token, wait)`: the changes to objects of `classes` since `token`
    /// (every object, as `add`, for an empty token), waiting up to `wait` seconds for one.
    /// Unlike [`Client::call`] a `SESSION_INVALID` is returned, after logging in again, since
    /// the caller must then re-read everything; the HTTP timeout is `wait` plus the request
    /// timeout.
    pub async fn event_from(
        &self,
        classes: &[&str],
        token: &str,
        wait: Duration,
    ) -> Result<records::EventBatch, Error> {
        let session = self.session().await?;
        let params = [
            Value::from(&*session.id),
            Value::from(classes.to_vec()),
            Value::from(token),
            Value::from(wait.as_secs_f64()),
        ];
        let master = self.master();
        match self
            .rpc_on(
                &self.event_http,
                wait + self.timeout,
                &master,
                "event.from",
                &params,
            )
            .await?
        {
            Decoded::Ok(batch) => Ok(batch),
            Decoded::Failure(f) => {
                if f.code == "SESSION_INVALID" || f.code == "HOST_IS_SLAVE" {
                    if f.code == "HOST_IS_SLAVE"
                        && let Some(address) = f.params.first()
                    {
                        *self.master.write().unwrap_or_else(|e| e.into_inner()) =
                            self.endpoint.with_host(address);
                    }
                    self.relogin(&session).await?;
                }
                Err(Error::Api(f))
            }
        }
    }

    /// Fetches the `/rrd_updates` body of the host at `host`: its own RRD and (unless
    /// `--collector.vm-rrd` is off) those of the VMs resident on it, a few 5-second rows ending
    /// at the host's latest update. Answers by `deadline` or fails with [`Error::Timeout`].
    pub async fn rrd_updates(&self, host: &Endpoint, deadline: Instant) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let result = self.rrd_updates_unrecorded(host, deadline).await;
        self.record("rrd", started, &result);
        result
    }

    async fn rrd_updates_unrecorded(
        &self,
        host: &Endpoint,
        deadline: Instant,
    ) -> Result<Vec<u8>, Error> {
        let mut session = self.session().await?;
        for attempt in 0..2 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout(self.timeout));
            }
            // A negative start is relative to the host's own last update, so the window is
            // right whatever the clock skew between us and the host (xapi-rrd >= 0.12, 2015).
            // `host=true` keeps the host's RRD, the only one left without VMs (with neither,
            // xcp-rrdd answers 500).
            let vms = if self.vm_rrd { "" } else { NO_VMS };
            let path = format!(
                "/rrd_updates?start=-10&interval=5&cf=AVERAGE&host=true{vms}&json=true&session_id={}",
                percent_encode(&session.id)
            );
            let reply = self
                .rrd_http
                .get(host, &path, "application/json", deadline)
                .await?;
            match reply {
                fetch::Reply::Body(body) => return Ok(body),
                fetch::Reply::Status(401) if attempt == 0 => {
                    tracing::info!(host = %host, "XAPI session refused by /rrd_updates; logging in again");
                    session = self.relogin(&session).await?;
                }
                fetch::Reply::Status(status) => return Err(Error::Http { status }),
            }
        }
        Err(Error::Http { status: 401 })
    }

    /// Ends the session (on shutdown). Failures are logged, not returned.
    pub async fn logout(&self) {
        let session = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.session.take()
        };
        let Some(session) = session else { return };
        let master = self.master();
        match self
            .rpc::<Value>(&master, "session.logout", &[Value::from(&*session)])
            .await
        {
            Ok(Decoded::Ok(_)) => tracing::info!(master = %master, "Logged out of XAPI"),
            Ok(Decoded::Failure(f)) => {
                tracing::warn!(code = %f.code, "XAPI logout failed")
            }
            Err(error) => tracing::warn!(%error, "XAPI logout failed"),
        }
    }
}

/// Errors that mean the master itself is gone (down, rebooting, demoted and unreachable), as
/// opposed to a refused request: worth asking the other members.
fn master_unreachable(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect(_)
            | Error::Timeout(_)
            | Error::Transport(_)
            | Error::Http { status: 502..=504 }
    )
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_keeps_opaque_refs_readable() {
        assert_eq!(
            percent_encode("OpaqueRef:1f0d3a9c-5b51"),
            "OpaqueRef:1f0d3a9c-5b51"
        );
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn reasons_are_bounded_words() {
        assert_eq!(Error::Http { status: 401 }.reason(), Reason::Auth);
        assert_eq!(Error::Http { status: 503 }.reason().as_str(), "http_5xx");
        assert_eq!(
            Error::Api(Failure {
                code: "SESSION_INVALID".into(),
                params: vec![]
            })
            .reason(),
            Reason::Session
        );
    }
}

//! State shared by every host of one simulator: configuration, addresses, TLS material, the
//! wake-up channels of blocked `event.from` calls, and behind one mutex the model, the event
//! log, the session table, counters, faults and RRD layout caches.
//!
//! The mutex is never held across an `.await`, so `Sim` methods work from sync test code.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::events::EventLog;
use super::model::Model;
use super::records::RecordCtx;
use super::rrd::{HostLayout, NewestRow, build_layout};
use super::tls::TlsMaterial;
use super::{Clock, Counters, HostFault, SimConfig};

/// xapi's per-originator session limit (`max_sessions_per_originator`).
const MAX_SESSIONS_PER_ORIGINATOR: usize = 500;
/// xapi's limit for originator-less sessions (`max_sessions`).
const MAX_ANONYMOUS_SESSIONS: usize = 400;
/// Recent login timestamps kept for `pool_session_creation_rate`.
const LOGIN_HISTORY: usize = 4096;
const QUERY_HISTORY: usize = 64;

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: SimConfig,
    pub(super) addresses: Vec<Ipv4Addr>,
    pub(super) port: u16,
    pub(super) tls: Option<TlsMaterial>,
    /// Ticks when the model or the session table changed: blocked `event.from` calls look
    /// again.
    pub(super) changes: watch::Sender<u64>,
    /// Ticks when every blocked `event.from` must lose its connection.
    pub(super) cuts: watch::Sender<u64>,
    /// Ticks when a host's fault is set: connections held by [`HostFault::Hang`] look again.
    pub(super) faults_set: watch::Sender<u64>,
    state: Mutex<State>,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) originator: String,
    pub(super) last_active: Instant,
    /// The user name given at login.
    pub(super) user: String,
    /// Logged in on a connection authenticated by a client certificate (role
    /// `client-cert`); otherwise a local superuser.
    pub(super) client_certificate: bool,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) model: Model,
    pub(super) events: EventLog,
    pub(super) sessions: HashMap<String, Session>,
    session_serial: u64,
    pub(super) counters: Counters,
    pub(super) faults: Vec<HostFault>,
    /// Hosts presenting an impostor certificate ([`super::Sim::impersonate_host`]).
    pub(super) impostors: Vec<bool>,
    layouts: Vec<Option<Arc<HostLayout>>>,
    pub(super) last_rrd: Vec<Option<NewestRow>>,
    login_times: VecDeque<i64>,
}

impl Shared {
    pub(super) fn new(
        config: SimConfig,
        addresses: Vec<Ipv4Addr>,
        port: u16,
        tls: Option<TlsMaterial>,
    ) -> Shared {
        let n = addresses.len();
        let ips: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        let now = clock_now(config.clock);
        let mut model = Model::new(&config, &ips, now);
        let (hosts, ca) = match &tls {
            Some(t) => (
                t.host_ders
                    .iter()
                    .map(|d| super::tls::fingerprints(d))
                    .collect(),
                super::tls::fingerprints(&t.ca_der),
            ),
            None => (Vec::new(), (String::new(), String::new())),
        };
        model.add_certificates(
            config.generation == super::Generation::Legacy,
            &hosts,
            ca,
            super::tls::VALIDITY,
        );
        let state = State {
            model,
            events: EventLog::new(RecordCtx {
                generation: config.generation,
            }),
            sessions: HashMap::new(),
            session_serial: 0,
            counters: Counters {
                rrd_updates: vec![0; n],
                rrd_bytes: vec![0; n],
                ..Counters::default()
            },
            faults: vec![HostFault::None; n],
            impostors: vec![false; n],
            layouts: vec![None; n],
            last_rrd: vec![None; n],
            login_times: VecDeque::new(),
        };
        Shared {
            config,
            addresses,
            port,
            tls,
            changes: watch::Sender::new(0),
            cuts: watch::Sender::new(0),
            faults_set: watch::Sender::new(0),
            state: Mutex::new(state),
        }
    }

    /// Wakes blocked `event.from` calls so that they look at the model and sessions again.
    pub(super) fn wake(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Aborts every blocked `event.from` call.
    pub(super) fn cut_event_streams(&self) {
        self.cuts.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Lets connections held by a hang see that their host's fault changed.
    pub(super) fn fault_changed(&self) {
        self.faults_set.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Returns once `host`'s fault is no longer `fault` (it was set to something else).
    pub(super) async fn lifted(&self, host: usize, fault: HostFault) {
        // Subscribed before looking, so that a change between look and wait is not missed;
        // `wait_for` looks at once, then at every tick.
        let mut set = self.faults_set.subscribe();
        let _ = set.wait_for(|_| self.fault(host) != fault).await;
    }

    /// Applies a model mutation, records its events and wakes `event.from` waiters; `f`
    /// gets the pool clock.
    pub(super) fn mutate<R>(&self, f: impl FnOnce(&mut Model, i64) -> R) -> R {
        let now = self.now();
        let mut st = self.lock();
        let r = f(&mut st.model, now);
        let State { model, events, .. } = &mut *st;
        if events.commit(model) {
            self.wake();
        }
        r
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough data for a simulator.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pool clock, epoch seconds.
    pub(super) fn now(&self) -> i64 {
        clock_now(self.config.clock)
    }

    pub(super) fn fault(&self, host: usize) -> HostFault {
        self.lock().faults.get(host).copied().unwrap_or_default()
    }

    pub(super) fn master_address(&self) -> String {
        self.addresses[self.master()].to_string()
    }

    /// Index of the current pool master.
    pub(super) fn master(&self) -> usize {
        self.lock().model.pool.master
    }
}

fn clock_now(clock: Clock) -> i64 {
    match clock {
        Clock::Frozen(t) => t,
        Clock::Real { skew_secs } => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            secs + skew_secs
        }
    }
}

impl State {
    /// Creates a session; returns its ref. Enforces xapi's per-originator limits by
    /// destroying the least recently active sessions of the same group.
    pub(super) fn create_session(&mut self, originator: &str, now: i64) -> String {
        self.create_user_session(originator, "", false, now)
    }

    /// [`State::create_session`] with the login's user name and how it authenticated.
    pub(super) fn create_user_session(
        &mut self,
        originator: &str,
        user: &str,
        client_certificate: bool,
        now: i64,
    ) -> String {
        self.session_serial += 1;
        let r = format!(
            "OpaqueRef:{}",
            super::rng::uuid(self.model.seed, "session", self.session_serial)
        );
        self.sessions.insert(
            r.clone(),
            Session {
                originator: originator.to_string(),
                last_active: Instant::now(),
                user: user.to_string(),
                client_certificate,
            },
        );
        self.login_times.push_back(now);
        while self.login_times.len() > LOGIN_HISTORY {
            self.login_times.pop_front();
        }
        let limit = if originator.is_empty() {
            MAX_ANONYMOUS_SESSIONS
        } else {
            MAX_SESSIONS_PER_ORIGINATOR
        };
        let mut group: Vec<(Instant, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.originator == originator)
            .map(|(k, s)| (s.last_active, k.clone()))
            .collect();
        if group.len() > limit {
            group.sort();
            for (_, k) in group.iter().take(group.len() - limit) {
                self.sessions.remove(k);
            }
        }
        r
    }

    /// Validates a session and records activity; expired sessions are destroyed.
    pub(super) fn touch_session(&mut self, r: &str, idle: Option<Duration>) -> bool {
        let expired = match self.sessions.get_mut(r) {
            None => return false,
            Some(s) => {
                if idle.is_some_and(|d| s.last_active.elapsed() > d) {
                    true
                } else {
                    s.last_active = Instant::now();
                    return true;
                }
            }
        };
        if expired {
            self.sessions.remove(r);
        }
        false
    }

    pub(super) fn destroy_session(&mut self, r: &str) -> bool {
        self.sessions.remove(r).is_some()
    }

    /// Live sessions, after dropping idle-expired ones.
    pub(super) fn live_sessions(&mut self, idle: Option<Duration>) -> usize {
        if let Some(d) = idle {
            self.sessions.retain(|_, s| s.last_active.elapsed() <= d);
        }
        self.sessions.len()
    }

    pub(super) fn login_times(&self) -> Vec<i64> {
        self.login_times.iter().copied().collect()
    }

    /// Host `h`'s RRD layout, rebuilt if the model changed since it was built.
    pub(super) fn layout(&mut self, h: usize) -> Arc<HostLayout> {
        if let Some(Some(l)) = self.layouts.get(h)
            && l.epoch == self.model.rrd_epoch
        {
            return Arc::clone(l);
        }
        let l = Arc::new(build_layout(&self.model, h));
        if let Some(slot) = self.layouts.get_mut(h) {
            *slot = Some(Arc::clone(&l));
        }
        l
    }

    pub(super) fn count_rpc(&mut self, method: &str) {
        *self.counters.rpc.entry(method.to_string()).or_insert(0) += 1;
    }

    pub(super) fn record_rrd_query(&mut self, host: usize, sanitized: String) {
        if let Some(c) = self.counters.rrd_updates.get_mut(host) {
            *c += 1;
        }
        let q = &mut self.counters.rrd_queries;
        q.push(sanitized);
        if q.len() > QUERY_HISTORY {
            let excess = q.len() - QUERY_HISTORY;
            q.drain(..excess);
        }
    }
}

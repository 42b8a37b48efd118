//! `event.from` and `event.inject`: the change log that turns model mutations into XAPI
//! events, token handling, subscriptions, and the blocking wait of `event.from`.
//!
//! The log does not track mutations one by one. After each one it rebuilds every record
//! and compares fingerprints with the previous build, so derived fields (host.resident_VMs,
//! SR.VDIs…) produce `mod` events on the objects that carry them, exactly as xapi's
//! database would. Mutations are rare; `/rrd_updates` never touches the log, and the log
//! is only built once somebody calls `event.from` or `event.inject`.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::time::{Duration, Instant};

use rustc_hash::FxHasher;

use super::model::Model;
use super::records::{self, CLASSES, RecordCtx};
use super::rpc::{XenError, check_session, err, expect_count, session_param};
use super::state::Shared;
use super::wire::V;

/// Longest wait honoured, so that a huge `timeout` cannot overflow `Instant`.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Creation, last change and content fingerprint of a live object.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    fingerprint: u64,
    created: u64,
    modified: u64,
}

/// A destroyed object, remembered so that later `event.from` calls can report `del`.
#[derive(Debug)]
struct Tomb {
    class: usize,
    opaque_ref: String,
    created: u64,
    deleted: u64,
}

/// Per-object change generations over every class in [`CLASSES`].
#[derive(Debug)]
pub(super) struct EventLog {
    ctx: RecordCtx,
    /// The database generation of the newest change; tokens carry it.
    generation: u64,
    /// `Model::generation` the log reflects; `None` until the first event call.
    seen: Option<u64>,
    /// Indexed like [`CLASSES`]: opaque ref → stamp.
    live: Vec<HashMap<String, Stamp>>,
    deleted: Vec<Tomb>,
    /// The next `event.from` fails with `EVENTS_LOST`.
    pub(super) lose_next: bool,
}

/// A parsed `event.from` class entry (xapi's `Subscription.t`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    All,
    Class(String),
    Object(String, String),
}

impl Sub {
    fn parse(s: &str) -> Sub {
        if s == "*" {
            return Sub::All;
        }
        match s.split_once('/') {
            Some((class, r)) => Sub::Object(class.to_ascii_lowercase(), r.to_string()),
            None => Sub::Class(s.to_ascii_lowercase()),
        }
    }
}

fn table_matches(subs: &[Sub], class: &str) -> bool {
    subs.iter().any(|s| match s {
        Sub::All => true,
        Sub::Class(c) | Sub::Object(c, _) => c == class,
    })
}

fn object_matches(subs: &[Sub], class: &str, r: &str) -> bool {
    subs.iter().any(|s| match s {
        Sub::All => true,
        Sub::Class(c) => c == class,
        Sub::Object(c, o) => c == class && o == r,
    })
}

/// xapi's `Token.to_string`: database generation, message generation.
pub(super) fn token(generation: u64, messages: u64) -> String {
    format!("{generation:020},{messages:020}")
}

/// xapi's `Token.of_string`: (database generation, message generation); `""` is the
/// beginning of both.
fn parse_token(t: &str) -> Option<(u64, u64)> {
    if t.is_empty() {
        return Some((0, 0));
    }
    let (db, msg) = t.split_once(',')?;
    let db: i64 = db.trim().parse().ok()?;
    let msg: i64 = msg.trim().parse().ok()?;
    // A negative generation is older than anything, like 0.
    Some((db.max(0) as u64, msg.max(0) as u64))
}

/// A content hash of a record. Any single changed value changes it (each step of the
/// hasher is a bijection); a collision between two versions of one record is negligible.
fn fingerprint(v: &V) -> u64 {
    // Length first, so that adjacent strings cannot trade bytes.
    fn text(h: &mut FxHasher, s: &str) {
        h.write_usize(s.len());
        h.write(s.as_bytes());
    }
    fn walk(v: &V, h: &mut FxHasher) {
        match v {
            V::Str(s) => {
                h.write_u8(0);
                text(h, s);
            }
            V::DateTime(s) => {
                h.write_u8(1);
                text(h, s);
            }
            V::Int(i) => {
                h.write_u8(2);
                h.write_i64(*i);
            }
            V::I32(i) => {
                h.write_u8(3);
                h.write_i32(*i);
            }
            V::Bool(b) => h.write_u8(4 + u8::from(*b)),
            V::Float(f) => {
                h.write_u8(6);
                h.write_u64(f.to_bits());
            }
            V::Array(items) => {
                h.write_u8(7);
                h.write_usize(items.len());
                for item in items {
                    walk(item, h);
                }
            }
            V::Map(members) => {
                h.write_u8(8);
                h.write_usize(members.len());
                for (k, item) in members {
                    text(h, k);
                    walk(item, h);
                }
            }
        }
    }
    let mut h = FxHasher::default();
    walk(v, &mut h);
    h.finish()
}

/// Lower-case event class names, indexed like [`CLASSES`].
fn event_class(c: usize) -> String {
    CLASSES[c].to_ascii_lowercase()
}

impl EventLog {
    pub(super) fn new(ctx: RecordCtx) -> EventLog {
        EventLog {
            ctx,
            generation: 0,
            seen: None,
            live: vec![HashMap::new(); CLASSES.len()],
            deleted: Vec::new(),
            lose_next: false,
        }
    }

    /// Builds the log from the model if nobody has looked at events yet.
    fn ensure(&mut self, model: &Model) {
        if self.seen.is_none() {
            self.generation = 1;
            self.diff(model, 1);
            self.seen = Some(model.generation);
        }
    }

    /// Records what the last mutations changed; true if any record did.
    pub(super) fn commit(&mut self, model: &Model) -> bool {
        match self.seen {
            None => false,
            Some(g) if g == model.generation => false,
            Some(_) => {
                self.seen = Some(model.generation);
                let next = self.generation + 1;
                let changed = self.diff(model, next);
                if changed {
                    self.generation = next;
                }
                changed
            }
        }
    }

    /// Stamps every added or changed object with `generation` and buries removed ones.
    fn diff(&mut self, model: &Model, generation: u64) -> bool {
        let mut changed = false;
        for (c, class) in CLASSES.iter().enumerate() {
            let recs = records::records(model, class, self.ctx).unwrap_or_default();
            let live = &mut self.live[c];
            let mut present: HashSet<&str> = HashSet::with_capacity(recs.len());
            for (r, rec) in &recs {
                present.insert(r.as_str());
                let fp = fingerprint(rec);
                match live.get_mut(r) {
                    Some(s) if s.fingerprint == fp => {}
                    Some(s) => {
                        s.fingerprint = fp;
                        s.modified = generation;
                        changed = true;
                    }
                    None => {
                        live.insert(
                            r.clone(),
                            Stamp {
                                fingerprint: fp,
                                created: generation,
                                modified: generation,
                            },
                        );
                        changed = true;
                    }
                }
            }
            if live.len() > present.len() {
                let gone: Vec<String> = live
                    .keys()
                    .filter(|r| !present.contains(r.as_str()))
                    .cloned()
                    .collect();
                for r in gone {
                    if let Some(s) = live.remove(&r) {
                        self.deleted.push(Tomb {
                            class: c,
                            opaque_ref: r,
                            created: s.created,
                            deleted: generation,
                        });
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// `event.inject`: marks one object modified and returns a token just before that
    /// change, so that `event.from` with it reports the object at once.
    pub(super) fn inject(&mut self, model: &Model, class: &str, r: &str) -> Option<String> {
        self.ensure(model);
        self.commit(model);
        let c = CLASSES.iter().position(|k| k.eq_ignore_ascii_case(class))?;
        let stamp = self.live[c].get_mut(r)?;
        self.generation += 1;
        stamp.modified = self.generation;
        // Message generation 0 (xapi_event.ml `inject`): the next event.from with this
        // token reports every existing message as `add`.
        Some(token(self.generation - 1, 0))
    }

    /// Events for objects of the subscribed classes changed after generation `since`,
    /// coalesced per object, and for messages created or destroyed after message
    /// generation `since_msg`; `None` when there are none.
    fn collect(&mut self, model: &Model, subs: &[Sub], since: u64, since_msg: u64) -> Option<V> {
        self.ensure(model);
        self.commit(model);
        let (msg_gen, mut message_events) = message_events(model, subs, since_msg);
        // (generation, class, operation, ref)
        let mut found: Vec<(u64, usize, &'static str, String)> = Vec::new();
        for (c, live) in self.live.iter().enumerate() {
            let class = event_class(c);
            if !table_matches(subs, &class) {
                continue;
            }
            for (r, s) in live {
                if s.modified > since && object_matches(subs, &class, r) {
                    if s.created > since {
                        found.push((s.created.max(s.modified), c, "add", r.clone()));
                    } else {
                        found.push((s.modified, c, "mod", r.clone()));
                    }
                }
            }
        }
        for t in &self.deleted {
            // Created and destroyed since the token: the client never knew it.
            if t.deleted > since && t.created <= since {
                let class = event_class(t.class);
                if object_matches(subs, &class, &t.opaque_ref) {
                    found.push((t.deleted, t.class, "del", t.opaque_ref.clone()));
                }
            }
        }
        if found.is_empty() && message_events.is_empty() {
            return None;
        }
        found.sort();
        let mut snapshots = self.snapshots(model, &found);
        let events = found.into_iter().map(|(g, c, op, r)| {
            let mut ev = vec![
                ("id".to_string(), V::Str(g.to_string())),
                ("timestamp".to_string(), V::str("0.0")),
                ("class".to_string(), V::Str(event_class(c))),
                ("operation".to_string(), V::str(op)),
            ];
            let snapshot = snapshots.remove(&(c, r.clone()));
            ev.push(("ref".to_string(), V::Str(r)));
            if let Some(s) = snapshot {
                ev.push(("snapshot".to_string(), s));
            }
            V::Map(ev)
        });
        message_events.extend(events);
        Some(self.result(V::Array(message_events), msg_gen))
    }

    /// Current records of the objects behind `add` and `mod` events.
    fn snapshots(
        &self,
        model: &Model,
        found: &[(u64, usize, &'static str, String)],
    ) -> HashMap<(usize, String), V> {
        let mut wanted: Vec<HashSet<&str>> = vec![HashSet::new(); CLASSES.len()];
        for (_, c, op, r) in found {
            if *op != "del" {
                wanted[*c].insert(r.as_str());
            }
        }
        let mut out = HashMap::new();
        for (c, refs) in wanted.iter().enumerate() {
            if refs.is_empty() {
                continue;
            }
            for (r, rec) in records::records(model, CLASSES[c], self.ctx).unwrap_or_default() {
                if refs.contains(r.as_str()) {
                    out.insert((c, r), rec);
                }
            }
        }
        out
    }

    /// The `event.from` result struct around `events`; `msg_gen` is the token's message
    /// generation.
    fn result(&self, events: V, msg_gen: u64) -> V {
        let counts = self
            .live
            .iter()
            .enumerate()
            .map(|(c, live)| {
                let n = i32::try_from(live.len()).unwrap_or(i32::MAX);
                (event_class(c), V::I32(n))
            })
            .collect();
        V::Map(vec![
            ("events".to_string(), events),
            ("valid_ref_counts".to_string(), V::Map(counts)),
            ("token".to_string(), V::Str(token(self.generation, msg_gen))),
        ])
    }
}

/// Message events after message generation `since` and the token's next message
/// generation, as xapi_event.ml special-cases messages: only when the `message` table is
/// subscribed (then every message, whatever object a subscription names; else generation
/// 0), `add` with the record for each message created since, `del` for each deletion still
/// in the ring, `id` "0", deletions first, oldest first.
fn message_events(model: &Model, subs: &[Sub], since: u64) -> (u64, Vec<V>) {
    if !table_matches(subs, records::MESSAGE) {
        return (0, Vec::new());
    }
    let mut newest = since;
    let mut out = Vec::new();
    let event = |op: &str, r: &str| {
        vec![
            ("id".to_string(), V::str("0")),
            ("timestamp".to_string(), V::str("0.0")),
            ("class".to_string(), V::str(records::MESSAGE)),
            ("operation".to_string(), V::str(op)),
            ("ref".to_string(), V::str(r)),
        ]
    };
    for (g, r) in &model.deleted_messages {
        if *g > since {
            newest = newest.max(*g);
            out.push(V::Map(event("del", r)));
        }
    }
    for m in &model.messages {
        if m.generation > since {
            newest = newest.max(m.generation);
            let mut ev = event("add", &m.id.opaque_ref);
            ev.push(("snapshot".to_string(), records::message(m)));
            out.push(V::Map(ev));
        }
    }
    (newest, out)
}

/// How an RPC ends: a reply, or the connection closed without one.
#[derive(Debug)]
pub(super) enum Outcome {
    Reply(Result<V, XenError>),
    /// Close the connection without an HTTP response (a cut stream).
    Abort,
}

fn field_type_error(field: &str) -> XenError {
    err("FIELD_TYPE_ERROR", &[field])
}

/// rpclib's `float_of_rpc`: floats, ints and numeric strings.
fn timeout_secs(v: &V) -> Option<f64> {
    match v {
        V::Float(f) => Some(*f),
        V::Int(i) => Some(*i as f64),
        V::I32(i) => Some(f64::from(*i)),
        V::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Validated `event.from` arguments.
struct FromArgs {
    session: String,
    subs: Vec<Sub>,
    since: u64,
    since_msg: u64,
    timeout: f64,
}

/// Checks `event.from`'s arguments in xapi's order: count, session, types, token.
fn from_args(shared: &Shared, params: &[V]) -> Result<FromArgs, XenError> {
    expect_count("event.from", params, 4)?;
    check_session(shared, params)?;
    let session = session_param(params)?.to_string();
    let V::Array(classes) = &params[1] else {
        return Err(field_type_error("classes"));
    };
    let subs = classes
        .iter()
        .map(|c| c.as_str().map(Sub::parse))
        .collect::<Option<Vec<Sub>>>()
        .ok_or_else(|| field_type_error("classes"))?;
    let token_text = match &params[2] {
        V::Str(t) => t.clone(),
        other => {
            let mut text = String::new();
            other.write_json(&mut text);
            text
        }
    };
    let (since, since_msg) = match &params[2] {
        V::Str(t) => parse_token(t),
        _ => None,
    }
    .ok_or_else(|| err("EVENT_FROM_TOKEN_PARSE_FAILURE", &[&token_text]))?;
    let timeout = timeout_secs(&params[3]).ok_or_else(|| field_type_error("timeout"))?;
    Ok(FromArgs {
        session,
        subs,
        since,
        since_msg,
        timeout,
    })
}

/// `event.from(session, classes, token, timeout)`, blocking until a subscribed object
/// changes, the timeout passes, the session dies or the stream is cut.
pub(super) async fn from(shared: &Shared, params: &[V]) -> Outcome {
    // Subscribed first, so that a cut requested while this call starts still applies.
    let mut cuts = shared.cuts.subscribe();
    let FromArgs {
        session,
        subs,
        since,
        since_msg,
        timeout,
    } = match from_args(shared, params) {
        Ok(a) => a,
        Err(e) => return Outcome::Reply(Err(e)),
    };
    if std::mem::take(&mut shared.lock().events.lose_next) {
        return Outcome::Reply(Err(err("EVENTS_LOST", &[])));
    }
    let wait = if timeout.is_finite() {
        timeout.clamp(0.0, MAX_TIMEOUT_SECS)
    } else if timeout > 0.0 {
        MAX_TIMEOUT_SECS
    } else {
        0.0
    };
    let deadline = Instant::now() + Duration::from_secs_f64(wait);
    loop {
        // Subscribed before looking, so that no change can slip between look and wait.
        let mut changes = shared.changes.subscribe();
        {
            let mut st = shared.lock();
            if !st.sessions.contains_key(&session) {
                return Outcome::Reply(Err(err("SESSION_INVALID", &[&session])));
            }
            let super::state::State { model, events, .. } = &mut *st;
            if let Some(v) = events.collect(model, &subs, since, since_msg) {
                return Outcome::Reply(Ok(v));
            }
            if Instant::now() >= deadline {
                // Nothing new: the message generation stays where the caller had it.
                let msg_gen = if table_matches(&subs, records::MESSAGE) {
                    since_msg
                } else {
                    0
                };
                return Outcome::Reply(Ok(events.result(V::Array(Vec::new()), msg_gen)));
            }
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = cuts.changed() => return Outcome::Abort,
        }
    }
}

/// `event.inject(session, class, ref)` → a token just before the injected change.
pub(super) fn inject(shared: &Shared, params: &[V]) -> Result<V, XenError> {
    expect_count("event.inject", params, 3)?;
    check_session(shared, params)?;
    let class = params[1].as_str().unwrap_or("");
    let r = params[2].as_str().unwrap_or("");
    let tok = {
        let mut st = shared.lock();
        let super::state::State { model, events, .. } = &mut *st;
        events.inject(model, class, r)
    };
    match tok {
        Some(t) => {
            shared.wake();
            Ok(V::Str(t))
        }
        None => Err(err("HANDLE_INVALID", &[class, r])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_like_xapi() {
        assert_eq!(token(42, 0), "00000000000000000042,00000000000000000000");
        assert_eq!(token(42, 7), "00000000000000000042,00000000000000000007");
        assert_eq!(parse_token(&token(42, 3)), Some((42, 3)));
        assert_eq!(parse_token(""), Some((0, 0)));
        assert_eq!(parse_token("7,0"), Some((7, 0)));
        assert_eq!(parse_token("-3,-1"), Some((0, 0)));
        for bad in ["7", "x,0", "1,y", "1,2,3", ","] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn subscriptions_are_case_insensitive() {
        let subs: Vec<Sub> = ["VM", "pbd/OpaqueRef:x"]
            .iter()
            .map(|s| Sub::parse(s))
            .collect();
        assert!(table_matches(&subs, "vm") && table_matches(&subs, "pbd"));
        assert!(!table_matches(&subs, "host"));
        assert!(object_matches(&subs, "pbd", "OpaqueRef:x"));
        assert!(!object_matches(&subs, "pbd", "OpaqueRef:y"));
        assert!(object_matches(&[Sub::All], "anything", "r"));
        assert!(!table_matches(&[Sub::parse("nonsense")], "vm"));
    }
}

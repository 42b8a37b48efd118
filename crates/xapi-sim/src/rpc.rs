//! XenAPI method dispatch, independent of the transport: roles (master vs member), sessions,
//! parameter counts, and the read-only methods an exporter uses.

use super::events::{self, Outcome};
use super::records::{self, RecordCtx, iso8601};
use super::state::Shared;
use super::wire::V;

/// An XenAPI error: `ErrorDescription` = code then parameters.
pub(super) type XenError = Vec<String>;

pub(super) fn err(code: &str, params: &[&str]) -> XenError {
    std::iter::once(code)
        .chain(params.iter().copied())
        .map(str::to_string)
        .collect()
}

fn count_mismatch(method: &str, expected: usize, got: usize) -> XenError {
    err(
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        &[method, &expected.to_string(), &got.to_string()],
    )
}

/// A sample of the `client-cert` role's permissions (XAPI lists several hundred: every
/// read-only one plus a few for certificate-authenticated clients), in XAPI's lower case.
const CLIENT_CERT_PERMISSIONS: &[&str] = &[
    "event.from",
    "event.inject",
    "host.get_all_records",
    "host.get_server_certificate",
    "http/get_rrd_updates",
    "pool.get_all_records",
    "session.logout",
    "sr.get_all_records",
    "vm.get_all_records",
];

/// Runs one RPC on host `host`; only `event.from` ever waits. `client_cert`: the connection
/// presented a client certificate the master's CA vouches for.
pub(super) async fn call(
    shared: &Shared,
    host: usize,
    client_cert: bool,
    method: &str,
    params: &[V],
) -> Outcome {
    shared.lock().count_rpc(method);
    // Members refuse everything, before any credential check (so at no delay).
    if host != shared.master() {
        return Outcome::Reply(Err(err("HOST_IS_SLAVE", &[&shared.master_address()])));
    }
    match method {
        "event.from" => events::from(shared, params).await,
        _ => Outcome::Reply(dispatch(shared, client_cert, method, params)),
    }
}

/// The master's non-blocking methods.
fn dispatch(shared: &Shared, client_cert: bool, method: &str, params: &[V]) -> Result<V, XenError> {
    let idle = shared.config.session_idle_timeout;
    match method {
        "session.login_with_password" => {
            if !(2..=4).contains(&params.len()) {
                return Err(count_mismatch(
                    method,
                    if params.len() < 2 { 2 } else { 4 },
                    params.len(),
                ));
            }
            let user = params[0].as_str().unwrap_or("");
            let pass = params[1].as_str().unwrap_or("");
            let originator = params.get(3).and_then(V::as_str).unwrap_or("");
            let now = shared.now();
            let mut st = shared.lock();
            // stunnel already authenticated a client-certificate connection: xapi does not
            // look at the password then (xapi_session.ml, the `client_cert` pre-auth).
            if client_cert || (user == shared.config.username && pass == shared.config.password) {
                let r = st.create_user_session(originator, user, client_cert, now);
                st.counters.logins += 1;
                if client_cert {
                    st.counters.client_cert_logins += 1;
                }
                st.counters.originators.push(originator.to_string());
                Ok(V::Str(r))
            } else {
                st.counters.failed_logins += 1;
                Err(err(
                    "SESSION_AUTHENTICATION_FAILED",
                    &[user, "Authentication failure"],
                ))
            }
        }
        "session.logout" => {
            expect_count(method, params, 1)?;
            let r = session_param(params)?;
            let mut st = shared.lock();
            if !st.touch_session(r, idle) {
                return Err(err("SESSION_INVALID", &[r]));
            }
            st.destroy_session(r);
            st.counters.logouts += 1;
            drop(st);
            // Its blocked event.from calls must end with SESSION_INVALID.
            shared.wake();
            Ok(V::str(""))
        }
        "event.inject" => events::inject(shared, params),
        "host.get_server_certificate" => {
            expect_count(method, params, 2)?;
            check_session(shared, params)?;
            let target = params[1].as_str().unwrap_or("");
            let Some(h) = shared.lock().model.host_of_ref(target) else {
                return Err(err("HANDLE_INVALID", &["host", target]));
            };
            // Without TLS xapi still has a certificate; the simulator has none to give.
            let pem = shared
                .tls
                .as_ref()
                .and_then(|t| t.host_pems.get(h).cloned())
                .ok_or_else(|| err("INTERNAL_ERROR", &["no server certificate"]))?;
            Ok(V::Str(pem))
        }
        "host.get_data_sources" => {
            expect_count(method, params, 2)?;
            check_session(shared, params)?;
            let target = params[1].as_str().unwrap_or("");
            let mut st = shared.lock();
            let Some(h) = st.model.host_of_ref(target) else {
                return Err(err("HANDLE_INVALID", &["host", target]));
            };
            let layout = st.layout(h);
            let host = &st.model.hosts[h];
            // Name and units as xcp-rrdd reports them; limits and value are not simulated.
            let sources = layout.host.names().map(|name| {
                V::Map(vec![
                    ("name_label".into(), V::str(name)),
                    ("name_description".into(), V::str("")),
                    ("enabled".into(), V::Bool(true)),
                    ("standard".into(), V::Bool(true)),
                    ("units".into(), V::str(super::rrd::host_units(host, name))),
                    ("min".into(), V::Float(0.0)),
                    ("max".into(), V::Float(0.0)),
                    ("value".into(), V::Float(0.0)),
                ])
            });
            Ok(V::Array(sources.collect()))
        }
        "session.get_is_local_superuser"
        | "session.get_auth_user_name"
        | "session.get_auth_user_sid"
        | "session.get_rbac_permissions"
        | "session.get_client_certificate"
        | "session.get_originator" => session_field(shared, method, params),
        "host.get_servertime" | "host.get_management_interface" | "session.get_this_host" => {
            expect_count(method, params, 2)?;
            check_session(shared, params)?;
            let target = params[1].as_str().unwrap_or("");
            let st = shared.lock();
            if method == "session.get_this_host" {
                if target != params[0].as_str().unwrap_or("") {
                    return Err(err("HANDLE_INVALID", &["session", target]));
                }
                return Ok(V::str(
                    st.model.hosts[st.model.pool.master].id.opaque_ref.clone(),
                ));
            }
            if st.model.host_of_ref(target).is_none() {
                return Err(err("HANDLE_INVALID", &["host", target]));
            }
            if method == "host.get_management_interface" {
                // The simulator's user is treated as read-only, which may not call this.
                return Err(err(
                    "RBAC_PERMISSION_DENIED",
                    &[
                        "host.get_management_interface",
                        "No permission in user session. (Roles with this permission: pool-admin, pool-operator)",
                    ],
                ));
            }
            Ok(V::DateTime(iso8601(shared.now())))
        }
        _ => class_method(shared, method, params),
    }
}

/// Getters of the session class, readable by every role. A password login is a local
/// superuser (no external authentication in the simulator): no RBAC permissions, since
/// xapi does not check them for such sessions.
fn session_field(shared: &Shared, method: &str, params: &[V]) -> Result<V, XenError> {
    // `client_certificate` is a field since xapi 21.2; 1.249 does not know the getter.
    if method == "session.get_client_certificate"
        && shared.config.generation == super::Generation::Legacy
    {
        return Err(err("MESSAGE_METHOD_UNKNOWN", &[method]));
    }
    expect_count(method, params, 2)?;
    check_session(shared, params)?;
    let target = params[1].as_str().unwrap_or("");
    let st = shared.lock();
    let s = st
        .sessions
        .get(target)
        .ok_or_else(|| err("HANDLE_INVALID", &["session", target]))?;
    Ok(match method {
        "session.get_is_local_superuser" => V::Bool(!s.client_certificate),
        "session.get_auth_user_name" => V::str(s.user.clone()),
        "session.get_auth_user_sid" => V::str(""),
        "session.get_client_certificate" => V::Bool(s.client_certificate),
        "session.get_originator" => V::str(s.originator.clone()),
        _ if s.client_certificate => {
            V::strings(CLIENT_CERT_PERMISSIONS.iter().map(|p| p.to_string()))
        }
        _ => V::Array(Vec::new()),
    })
}

/// `<class>.get_all_records | get_all | get_record | get_by_uuid`.
fn class_method(shared: &Shared, method: &str, params: &[V]) -> Result<V, XenError> {
    let unknown = || err("MESSAGE_METHOD_UNKNOWN", &[method]);
    let (class, call) = method.split_once('.').ok_or_else(unknown)?;
    if !records::is_served(class) {
        return Err(unknown());
    }
    let arity = match call {
        "get_all_records" | "get_all" => 1,
        "get_record" | "get_by_uuid" => 2,
        _ => return Err(unknown()),
    };
    expect_count(method, params, arity)?;
    check_session(shared, params)?;
    let ctx = RecordCtx {
        generation: shared.config.generation,
    };
    let st = shared.lock();
    let recs = records::records(&st.model, class, ctx).ok_or_else(unknown)?;
    drop(st);
    match call {
        "get_all_records" => Ok(V::Map(recs)),
        "get_all" => Ok(V::Array(recs.into_iter().map(|(r, _)| V::Str(r)).collect())),
        "get_record" => {
            let want = params[1].as_str().unwrap_or("");
            recs.into_iter()
                .find(|(r, _)| r == want)
                .map(|(_, rec)| rec)
                .ok_or_else(|| err("HANDLE_INVALID", &[class, want]))
        }
        _ => {
            let want = params[1].as_str().unwrap_or("");
            recs.into_iter()
                .find(|(_, rec)| match rec {
                    V::Map(fields) => fields
                        .first()
                        .is_some_and(|(k, v)| k == "uuid" && v.as_str() == Some(want)),
                    _ => false,
                })
                .map(|(r, _)| V::Str(r))
                .ok_or_else(|| err("UUID_INVALID", &[class, want]))
        }
    }
}

pub(super) fn expect_count(method: &str, params: &[V], n: usize) -> Result<(), XenError> {
    if params.len() == n {
        Ok(())
    } else {
        Err(count_mismatch(method, n, params.len()))
    }
}

pub(super) fn session_param(params: &[V]) -> Result<&str, XenError> {
    match params.first() {
        Some(V::Str(s)) => Ok(s),
        Some(other) => {
            let mut text = String::new();
            other.write_json(&mut text);
            Err(vec!["SESSION_INVALID".into(), text])
        }
        None => Err(err("SESSION_INVALID", &[""])),
    }
}

pub(super) fn check_session(shared: &Shared, params: &[V]) -> Result<(), XenError> {
    let r = session_param(params)?;
    if shared
        .lock()
        .touch_session(r, shared.config.session_idle_timeout)
    {
        Ok(())
    } else {
        Err(err("SESSION_INVALID", &[r]))
    }
}

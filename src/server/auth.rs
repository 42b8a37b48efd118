//! HTTP Basic authentication against `basic_auth_users` (user → bcrypt hash), the way
//! exporter-toolkit does it: one bcrypt at a time, each (user, hash, password) verified once
//! and the outcome cached, unknown users checked against a decoy hash so that timing does not
//! tell which users exist. Passwords and hashes are never logged or printed.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use base64::Engine;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::web_config::SecretText;

/// `basic_auth_users` as written: user names and hashes, in file order.
#[derive(Debug, Default)]
pub(super) struct UsersSection(Vec<(String, SecretText)>);

impl<'de> Deserialize<'de> for UsersSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UsersVisitor)
    }
}

/// A map visitor whose errors never repeat a value, which could be a hash.
struct UsersVisitor;

const USERS_EXPECTED: &str = "basic_auth_users must map user names to bcrypt hashes";

impl<'de> Visitor<'de> for UsersVisitor {
    type Value = UsersSection;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of user names to bcrypt hashes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsersSection, A::Error> {
        let mut users = Vec::new();
        while let Some((name, hash)) = map.next_entry::<String, SecretText>()? {
            users.push((name, hash));
        }
        Ok(UsersSection(users))
    }

    fn visit_unit<E: de::Error>(self) -> Result<UsersSection, E> {
        Ok(UsersSection::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<UsersSection, E> {
        Ok(UsersSection::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<UsersSection, E> {
        Err(E::custom(USERS_EXPECTED))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UsersSection, E> {
        Err(E::custom(USERS_EXPECTED))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UsersSection, E> {
        Err(E::custom(USERS_EXPECTED))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UsersSection, E> {
        Err(E::custom(USERS_EXPECTED))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UsersSection, E> {
        Err(E::custom(USERS_EXPECTED))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<UsersSection, A::Error> {
        Err(de::Error::custom(USERS_EXPECTED))
    }
}

struct Entry {
    name_digest: [u8; 32],
    hash: SecretText,
    cost: u32,
}

/// The validated user table. Empty: no authentication.
#[derive(Default)]
pub(crate) struct Users {
    entries: Vec<Entry>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({})", self.entries.len())
    }
}

impl Users {
    pub(super) fn from_section(section: UsersSection) -> Result<Users, String> {
        let mut entries = Vec::new();
        for (name, hash) in section.0 {
            if name.contains(':') {
                return Err(format!(
                    "basic_auth_users: user name {name:?} contains ':', which Basic authentication cannot carry"
                ));
            }
            let cost = bcrypt_cost(hash.expose()).map_err(|why| {
                format!(
                    "basic_auth_users: the hash of user {name:?} {why}; generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
                )
            })?;
            entries.push(Entry {
                name_digest: Sha256::digest(name.as_bytes()).into(),
                hash,
                cost,
            });
        }
        Ok(Users { entries })
    }

    /// How many users there are.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether authentication is off.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `user`, looked at in constant time: every entry is compared, by digest so
    /// that name lengths do not show either.
    fn find(&self, user: &[u8]) -> Option<&Entry> {
        let digest: [u8; 32] = Sha256::digest(user).into();
        let mut index = 0u64;
        let mut found = Choice::from(0);
        for (i, entry) in self.entries.iter().enumerate() {
            let equal = entry.name_digest.ct_eq(&digest);
            index.conditional_assign(&(i as u64), equal);
            found |= equal;
        }
        if bool::from(found) {
            self.entries.get(usize::try_from(index).ok()?)
        } else {
            None
        }
    }
}

/// The cost of a `$2a$`, `$2b$` or `$2y$` hash, or what is wrong with it (without quoting it).
fn bcrypt_cost(hash: &str) -> Result<u32, &'static str> {
    if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
        return Err("is not a bcrypt hash ($2y$, $2b$ or $2a$)");
    }
    let parts =
        bcrypt::HashParts::from_str(hash).map_err(|_| "is not a well-formed bcrypt hash")?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err("has a bcrypt cost outside 4-31");
    }
    Ok(cost)
}

/// Cached outcomes kept at most; beyond, an arbitrary one is forgotten.
const CACHE_ENTRIES: usize = 1024;

/// Checks credentials; shared by every request and kept across reloads (its cache is keyed
/// by the hash too, so a changed hash is verified afresh).
pub(crate) struct Authenticator {
    cache: Mutex<HashMap<[u8; 32], bool>>,
    /// bcrypt is CPU-heavy by design: one at a time, like exporter-toolkit, so that a flood
    /// of wrong passwords costs one core at most.
    gate: tokio::sync::Semaphore,
    /// A hash of nothing anyone knows, at the users' cost, checked for unknown user names.
    decoy: Arc<Mutex<Option<(u32, String)>>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator")
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
            gate: tokio::sync::Semaphore::new(1),
            decoy: Arc::new(Mutex::new(None)),
        }
    }
}

impl Authenticator {
    /// Whether the `Authorization` header satisfies `users` (always, when there are none).
    pub(crate) async fn check(&self, users: &Users, header: Option<&HeaderValue>) -> bool {
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        let entry = users.find(&user);
        let known = entry.is_some();
        let cost = entry.map_or_else(|| users.entries.first().map_or(10, |e| e.cost), |e| e.cost);
        let hash = entry.map(|e| e.hash.clone());
        let key = cache_key(
            &user,
            hash.as_ref().map_or("", SecretText::expose),
            &password,
        );
        if let Some(ok) = self.cached(&key) {
            return ok && known;
        }
        let Ok(_permit) = self.gate.acquire().await else {
            return false;
        };
        // Another request with the same credentials may have verified them while we waited.
        if let Some(ok) = self.cached(&key) {
            return ok && known;
        }
        let decoy = self.decoy.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let hash = match hash {
                Some(hash) => hash.expose().to_string(),
                None => decoy_hash(&decoy, cost),
            };
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = verified && known;
        self.remember(key, ok);
        ok
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn remember(&self, key: [u8; 32], ok: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES
            && let Some(victim) = cache.keys().next().copied()
        {
            cache.remove(&victim);
        }
        cache.insert(key, ok);
    }
}

fn decoy_hash(decoy: &Mutex<Option<(u32, String)>>, cost: u32) -> String {
    let mut slot = decoy.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((c, hash)) = slot.as_ref()
        && *c == cost
    {
        return hash.clone();
    }
    // bcrypt salts every hash randomly, so nobody can know a password for it.
    let hash = bcrypt::hash("xen-exporter decoy", cost).unwrap_or_default();
    *slot = Some((cost, hash.clone()));
    hash
}

/// (user, hash, password) → one fixed-size key; the password only through its own digest.
fn cache_key(user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update((user.len() as u64).to_be_bytes());
    digest.update(user);
    digest.update((hash.len() as u64).to_be_bytes());
    digest.update(hash.as_bytes());
    digest.update(Sha256::digest(password));
    digest.finalize().into()
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = header.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = std::str::from_utf8(rest).ok()?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(pairs: &[(&str, &str)]) -> Result<Users, String> {
        Users::from_section(UsersSection(
            pairs
                .iter()
                .map(|(u, h)| (u.to_string(), SecretText::from_test(h)))
                .collect(),
        ))
    }

    fn basic(user: &str, password: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[test]
    fn hashes_are_validated_without_being_quoted() {
        let good = bcrypt::hash("pw", 4).unwrap();
        assert!(users(&[("alice", &good)]).is_ok());
        let y = good.replacen("$2b$", "$2y$", 1);
        assert!(users(&[("alice", &y)]).is_ok());
        for bad in [
            "plain",
            "$2x$04$abcdefghijklmnopqrstuu",
            "$1$abc",
            "$2y$04$short",
        ] {
            let e = users(&[("alice", bad)]).unwrap_err();
            assert!(!e.contains(bad), "{e}");
            assert!(e.contains("alice"), "{e}");
        }
        assert!(users(&[("a:b", &good)]).is_err());
    }

    #[tokio::test]
    async fn right_password_passes_wrong_ones_and_unknown_users_do_not() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let table = users(&[("alice", &hash), ("bob", &hash)]).unwrap();
        let auth = Authenticator::default();
        assert!(auth.check(&table, Some(&basic("alice", "s3cret"))).await);
        assert!(auth.check(&table, Some(&basic("bob", "s3cret"))).await);
        assert!(!auth.check(&table, Some(&basic("alice", "wrong"))).await);
        assert!(!auth.check(&table, Some(&basic("carol", "s3cret"))).await);
        assert!(!auth.check(&table, None).await);
        let bearer = HeaderValue::from_static("Bearer abc");
        assert!(!auth.check(&table, Some(&bearer)).await);
        // Cached outcomes give the same answers.
        assert!(auth.check(&table, Some(&basic("alice", "s3cret"))).await);
        assert!(!auth.check(&table, Some(&basic("alice", "wrong"))).await);
        assert!(!auth.check(&table, Some(&basic("carol", "s3cret"))).await);
        assert_eq!(auth.cache.lock().unwrap().len(), 4);
        assert!(auth.check(&Users::default(), None).await);
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            basic_credentials(&basic("u", "p:q")),
            Some((b"u".to_vec(), b"p:q".to_vec()))
        );
        let lower = HeaderValue::from_static("basic dTpw");
        assert_eq!(
            basic_credentials(&lower),
            Some((b"u".to_vec(), b"p".to_vec()))
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Basic !!")),
            None
        );
    }
}

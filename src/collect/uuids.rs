//! `XEN_HASH_UUIDS`: replaces every `*_uuid` label value by a keyed hash, where labels are
//! built (a host's series map, the record families of a snapshot, the few samples of a
//! scrape), never over a whole exposition. The hash is HMAC-SHA256 with the operator's key,
//! the first 16 bytes in hex, so that the exposition identifies objects stably without
//! revealing their UUIDs.
//! A label of the same set whose value is one of those UUIDs (the name of an object the
//! inventory does not know yet, or an unresolved SR prefix) is hashed too.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use rustc_hash::FxHashMap;
use sha2::Sha256;

use crate::metrics::{FamiliesBuilder, Family, Label, Tail};

/// Hex digits kept of the 64: 128 bits make collisions between a pool's objects
/// vanishingly unlikely and keep label values as short as a UUID.
const HEX_DIGITS: usize = 32;

/// Hashes label values with one key, each distinct value once.
pub(super) struct Hasher {
    keyed: Hmac<Sha256>,
    memo: FxHashMap<Arc<str>, Arc<str>>,
    heads: FxHashMap<usize, Rebuilt>,
}

impl Hasher {
    pub(super) fn new(key: &[u8]) -> Hasher {
        Hasher {
            // HMAC takes keys of any length; this cannot fail.
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length")),
            memo: FxHashMap::default(),
            heads: FxHashMap::default(),
        }
    }

    /// `value` hashed, as it appears in every `*_uuid` label.
    pub(super) fn hash(&mut self, value: &Arc<str>) -> Arc<str> {
        // An empty UUID (a host not known yet) says nothing; keep it recognisable.
        if value.is_empty() {
            return value.clone();
        }
        let keyed = &self.keyed;
        self.memo
            .entry(value.clone())
            .or_insert_with(|| {
                let mut mac = keyed.clone();
                mac.update(value.as_bytes());
                let digest = mac.finalize().into_bytes();
                let mut hex = String::with_capacity(HEX_DIGITS);
                for b in &digest[..HEX_DIGITS / 2] {
                    hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                    hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
                }
                Arc::from(hex)
            })
            .clone()
    }

    /// The label set with UUIDs hashed, or `None` when it has none.
    fn relabel<'a>(
        &mut self,
        labels: impl Iterator<Item = &'a Label> + Clone,
    ) -> Option<Vec<Label>> {
        let uuids: Vec<&Arc<str>> = labels
            .clone()
            .filter(|l| l.name.ends_with("_uuid") && !l.value.is_empty())
            .map(|l| &l.value)
            .collect();
        if uuids.is_empty() {
            return None;
        }
        Some(
            labels
                .map(|l| {
                    if l.name.ends_with("_uuid") || uuids.contains(&&l.value) {
                        Label {
                            name: l.name,
                            value: self.hash(&l.value),
                        }
                    } else {
                        l.clone()
                    }
                })
                .collect(),
        )
    }
}

impl Hasher {
    /// A head with its UUIDs hashed. Heads are shared by many samples: each distinct one is
    /// rebuilt once, and the original is kept in the memo so that its address cannot be
    /// reused by a new allocation meanwhile.
    pub(super) fn relabel_head(&mut self, head: Arc<[Label]>) -> Arc<[Label]> {
        let address = Arc::as_ptr(&head).cast::<Label>() as usize;
        if let Some((_, rebuilt)) = self.heads.get(&address) {
            return rebuilt.clone();
        }
        let rebuilt = match self.relabel(head.iter()) {
            Some(labels) => Arc::from(labels),
            None => head.clone(),
        };
        self.heads.insert(address, (head, rebuilt.clone()));
        rebuilt
    }

    /// A tail with its UUIDs hashed.
    pub(super) fn relabel_tail(&mut self, tail: Tail) -> Tail {
        match self.relabel(tail.iter()) {
            Some(labels) => Tail::from(labels),
            None => tail,
        }
    }
}

/// A head as it was (kept alive) and as rebuilt.
type Rebuilt = (Arc<[Label]>, Arc<[Label]>);

/// Replaces UUID label values of the samples added to `out` one by one; rows added as frames
/// come from series maps, which hash their labels when they are built. [`FamiliesBuilder::finish`]
/// restores the sort order afterwards (the label values changed).
pub(super) fn hash_builder_samples(out: &mut FamiliesBuilder, key: &[u8]) {
    let mut hasher = Hasher::new(key);
    for samples in out.samples_mut() {
        for sample in samples {
            sample.labels.head = hasher.relabel_head(sample.labels.head.clone());
            sample.labels.tail = hasher.relabel_tail(std::mem::take(&mut sample.labels.tail));
        }
    }
}

/// Replaces UUID label values in finished `families` by their keyed hashes, sorted again.
pub(super) fn hash_uuid_labels(families: Vec<Family>, key: &[u8]) -> Vec<Family> {
    let mut out = FamiliesBuilder::new();
    for family in families {
        let Family {
            name,
            help,
            kind,
            mut samples,
        } = family;
        out.family(name, move |_| (help, kind)).append(&mut samples);
    }
    hash_builder_samples(&mut out, key);
    out.finish().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Kind, Labels, Sample};
    use std::borrow::Cow;

    const VM: &str = "0d8a4a4e-5a5c-4d5e-9d36-2a0e4f9a0b11";
    const HOST: &str = "6b2f8a3c-1f0e-4b3d-8a8e-5e7c9d2a1b33";
    const SR: &str = "a8262086-81fe-4e43-988a-d1d742c7f782";

    fn family(name: &'static str, samples: Vec<Sample>) -> Family {
        Family {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed("help"),
            kind: Kind::Gauge,
            samples,
        }
    }

    fn value<'a>(labels: &'a Labels, name: &str) -> &'a str {
        &labels.iter().find(|l| l.name == name).unwrap().value
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2, truncated the way the labels are.
        let mut h = Hasher::new(b"Jefe");
        let hashed = h.hash(&Arc::from("what do ya want for nothing?"));
        assert_eq!(&*hashed, "5bdcc146bf60754e6a042426089575c7");
    }

    #[test]
    fn every_uuid_label_is_hashed_stably_and_heads_stay_shared() {
        let head: Arc<[Label]> = Arc::from(vec![
            Label::new("vm", VM), // named by its UUID: not in the inventory yet
            Label::new("vm_uuid", VM),
            Label::new("host", "xcp-ng-01"),
            Label::new("host_uuid", HOST),
        ]);
        let cpu = Tail::from([Label::new("cpu", "0")]);
        let sr = Tail::from([Label::new("sr", "Local storage"), Label::new("sr_uuid", SR)]);
        let families = vec![
            family(
                "xen_vm_cpu",
                vec![
                    Sample {
                        labels: Labels {
                            head: head.clone(),
                            tail: cpu.clone(),
                        },
                        value: 0.5,
                    },
                    Sample {
                        labels: Labels {
                            head: head.clone(),
                            tail: Tail::from([Label::new("cpu", "1")]),
                        },
                        value: 0.25,
                    },
                ],
            ),
            family(
                "xen_host_read",
                vec![Sample {
                    labels: Labels {
                        head: Arc::from(vec![
                            Label::new("host", "xcp-ng-01"),
                            Label::new("host_uuid", HOST),
                        ]),
                        tail: sr,
                    },
                    value: 3.0,
                }],
            ),
            family(
                "xen_exporter_build_info",
                vec![Sample {
                    labels: Labels::head(Arc::from(vec![Label::new("version", "1")])),
                    value: 1.0,
                }],
            ),
        ];
        let out = hash_uuid_labels(families.clone(), b"0123456789abcdef");
        let again = hash_uuid_labels(families, b"0123456789abcdef");
        assert_eq!(out, again, "stable for one key");

        let mut h = Hasher::new(b"0123456789abcdef");
        let (vm, host, sr) = (h.hash(&VM.into()), h.hash(&HOST.into()), h.hash(&SR.into()));
        assert_eq!(vm.len(), 32);
        assert!(
            vm.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );

        let cpu = out.iter().find(|f| f.name == "xen_vm_cpu").unwrap();
        assert_eq!(cpu.samples.len(), 2);
        assert!(Arc::ptr_eq(
            &cpu.samples[0].labels.head,
            &cpu.samples[1].labels.head
        ));
        let labels = &cpu.samples[0].labels;
        assert_eq!(value(labels, "vm_uuid"), &*vm);
        assert_eq!(
            value(labels, "vm"),
            &*vm,
            "a name that is the UUID is hashed too"
        );
        assert_eq!(value(labels, "host_uuid"), &*host);
        assert_eq!(value(labels, "host"), "xcp-ng-01");
        assert_eq!(value(labels, "cpu"), "0");

        let read = out.iter().find(|f| f.name == "xen_host_read").unwrap();
        let labels = &read.samples[0].labels;
        assert_eq!(value(labels, "host_uuid"), &*host, "same UUID, same hash");
        assert_eq!(value(labels, "sr_uuid"), &*sr);
        assert_eq!(value(labels, "sr"), "Local storage");

        let info = out
            .iter()
            .find(|f| f.name == "xen_exporter_build_info")
            .unwrap();
        assert_eq!(value(&info.samples[0].labels, "version"), "1");

        let other = hash_uuid_labels(
            vec![family(
                "xen_vm_cpu",
                vec![Sample {
                    labels: Labels::head(Arc::from(vec![Label::new("vm_uuid", VM)])),
                    value: 1.0,
                }],
            )],
            b"another key, another hash",
        );
        assert_ne!(value(&other[0].samples[0].labels, "vm_uuid"), &*vm);
    }

    #[test]
    fn empty_uuids_stay_empty() {
        let out = hash_uuid_labels(
            vec![family(
                "xen_host_up",
                vec![Sample {
                    labels: Labels::head(Arc::from(vec![
                        Label::new("host", "192.0.2.1"),
                        Label::new("host_uuid", ""),
                    ])),
                    value: 0.0,
                }],
            )],
            b"0123456789abcdef",
        );
        assert_eq!(value(&out[0].samples[0].labels, "host_uuid"), "");
        assert_eq!(value(&out[0].samples[0].labels, "host"), "192.0.2.1");
    }
}

//! The Prometheus side of the exporter: the metric model, the catalog of family names and the
//! encoders. Pure, synchronous and infallible; it knows nothing about XAPI or the network.

pub mod catalog;
pub mod encode;
pub mod exposition;
pub mod series;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

/// The Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A value that can go up and down; every RRD data source is one (a per-step average).
    Gauge,
    /// A monotonically increasing count; the family name ends in `_total`.
    Counter,
    /// Declared `untyped` (`unknown` in OpenMetrics): inherited names that end in `_total` or
    /// `_count` but are not counters, which promtool would reject as gauges.
    Untyped,
}

/// One label: a name from a fixed vocabulary and a shared value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The label name; always a legal Prometheus label name.
    pub name: &'static str,
    /// The raw (unescaped) value; escaping happens in the encoder.
    pub value: Arc<str>,
}

impl Label {
    /// A label from a name and anything that converts into a shared string.
    pub fn new(name: &'static str, value: impl Into<Arc<str>>) -> Self {
        Label {
            name,
            value: value.into(),
        }
    }
}

/// The labels of one sample: a shared head (the identity of the object, e.g. a VM and its host)
/// followed by a short tail of per-sample labels (a CPU, a device, an SR). The split keeps a
/// scrape of thousands of VMs from copying the same four labels into every sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Labels shared by every sample of one object, in output order.
    pub head: Arc<[Label]>,
    /// Labels specific to this sample, in output order after `head`.
    pub tail: Tail,
}

impl Labels {
    /// Labels with only a shared head.
    pub fn head(head: Arc<[Label]>) -> Self {
        Labels {
            head,
            tail: Tail::default(),
        }
    }

    /// No labels at all.
    pub fn none() -> Self {
        Labels {
            head: Arc::from(Vec::new()),
            tail: Tail::default(),
        }
    }

    /// Every label in output order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.head.iter().chain(self.tail.iter())
    }
}

/// The per-sample labels after the head. Most samples have none, and an empty boxed slice
/// allocates nothing: a sample is 40 bytes, not the 80 of a tail kept inline, which is what
/// rendering the record families of a large pool holds tens of thousands of at once.
pub type Tail = Box<[Label]>;

/// One sample: labels and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's labels.
    pub labels: Labels,
    /// The value; NaN is never produced for RRD data (NaN samples are left out).
    pub value: f64,
}

/// A metric family: a name, its metadata and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The full metric name as it appears on sample lines (counters end in `_total`).
    pub name: Cow<'static, str>,
    /// The help text (unescaped), including the source unit where it is not a base unit.
    pub help: Cow<'static, str>,
    /// The metric type.
    pub kind: Kind,
    /// The samples; sorted and free of duplicates once built by [`FamiliesBuilder`].
    pub samples: Vec<Sample>,
}

/// Collects samples into families and finishes them into the deterministic order the encoder
/// expects: families sorted by name, samples sorted by label values, duplicates removed. For
/// what the exporter derives itself (records, health, SR capacity); RRD rows take the series
/// maps' path ([`series`], [`exposition`]).
#[derive(Debug, Default)]
pub struct FamiliesBuilder {
    index: FxHashMap<Cow<'static, str>, usize>,
    families: Vec<Family>,
}

impl FamiliesBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sample list of the family `name`; `meta` (help text and type) is called only when
    /// the family is created, so callers can pass a catalog lookup without paying for it on
    /// every sample. Metadata of later calls for the same name is ignored.
    pub fn family(
        &mut self,
        name: Cow<'static, str>,
        meta: impl FnOnce(&str) -> (Cow<'static, str>, Kind),
    ) -> &mut Vec<Sample> {
        let idx = self.family_index(name, meta);
        &mut self.families[idx].samples
    }

    /// The index of the family `name`, created as in [`FamiliesBuilder::family`]; with
    /// [`FamiliesBuilder::push_at`] it lets a caller that maps many samples to the same few
    /// families look each name up once.
    pub fn family_index(
        &mut self,
        name: Cow<'static, str>,
        meta: impl FnOnce(&str) -> (Cow<'static, str>, Kind),
    ) -> usize {
        if let Some(&idx) = self.index.get(name.as_ref()) {
            return idx;
        }
        let (help, kind) = meta(&name);
        let idx = self.families.len();
        self.index.insert(name.clone(), idx);
        self.families.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        idx
    }

    /// Adds a sample to the family at `index` (from [`FamiliesBuilder::family_index`]).
    pub fn push_at(&mut self, index: usize, sample: Sample) {
        self.families[index].samples.push(sample);
    }

    /// The samples added so far, family by family, for a pass that rewrites labels before
    /// [`FamiliesBuilder::finish`] sorts them.
    pub fn samples_mut(&mut self) -> impl Iterator<Item = &mut Vec<Sample>> {
        self.families.iter_mut().map(|f| &mut f.samples)
    }

    /// Adds one sample to the family `name` (see [`FamiliesBuilder::family`]).
    pub fn push(
        &mut self,
        name: Cow<'static, str>,
        meta: impl FnOnce(&str) -> (Cow<'static, str>, Kind),
        sample: Sample,
    ) {
        self.family(name, meta).push(sample);
    }

    /// Sorts families and samples and drops duplicate series (the first one wins). Returns the
    /// families and the number of duplicate samples that were dropped.
    pub fn finish(self) -> (Vec<Family>, usize) {
        sort_families(self.families)
    }
}

/// Drops empty families, sorts the rest and their samples, drops duplicate series.
fn sort_families(mut families: Vec<Family>) -> (Vec<Family>, usize) {
    families.retain(|f| !f.samples.is_empty());
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let ranks = HeadRanks::new(&families);
    let dropped = families
        .iter_mut()
        .map(|family| sort_and_dedup(&mut family.samples, &ranks))
        .sum();
    (families, dropped)
}

/// The position of every distinct label head in sorted order. Thousands of samples share a
/// few thousand heads (one per VM or host), so heads are compared once per collection and
/// sample sorting compares a number and a short tail instead of four long label values.
struct HeadRanks {
    by_pointer: FxHashMap<usize, u32>,
    /// Number of distinct ranks.
    count: usize,
}

impl HeadRanks {
    fn key(head: &Arc<[Label]>) -> usize {
        Arc::as_ptr(head).cast::<Label>() as usize
    }

    fn new(families: &[Family]) -> HeadRanks {
        let mut distinct: Vec<&Arc<[Label]>> = Vec::new();
        let mut seen: FxHashSet<usize> = FxHashSet::default();
        for sample in families.iter().flat_map(|f| &f.samples) {
            if seen.insert(Self::key(&sample.labels.head)) {
                distinct.push(&sample.labels.head);
            }
        }
        distinct.sort_by(|a, b| compare_label_slices(a, b));
        let mut by_pointer = FxHashMap::default();
        by_pointer.reserve(distinct.len());
        let mut rank = 0u32;
        for (i, head) in distinct.iter().enumerate() {
            if i > 0 && compare_label_slices(distinct[i - 1], head) != Ordering::Equal {
                rank += 1;
            }
            by_pointer.insert(Self::key(head), rank);
        }
        HeadRanks {
            by_pointer,
            count: if distinct.is_empty() {
                0
            } else {
                rank as usize + 1
            },
        }
    }

    fn rank(&self, head: &Arc<[Label]>) -> u32 {
        self.by_pointer
            .get(&Self::key(head))
            .copied()
            .unwrap_or(u32::MAX)
    }
}

/// Sorts samples by (head rank, tail) and drops duplicates, keeping the first. A counting
/// sort by rank, then a comparison sort only inside the short runs that share a head (the CPUs
/// of one VM, say).
fn sort_and_dedup(samples: &mut Vec<Sample>, ranks: &HeadRanks) -> usize {
    let keys: Vec<usize> = samples
        .iter()
        .map(|s| ranks.rank(&s.labels.head) as usize)
        .collect();
    let mut starts = vec![0usize; ranks.count + 1];
    for &key in &keys {
        starts[key + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![0usize; samples.len()];
    let mut next = starts.clone();
    for (i, &key) in keys.iter().enumerate() {
        order[next[key]] = i;
        next[key] += 1;
    }
    for run in starts.windows(2) {
        if run[1] - run[0] > 1 {
            order[run[0]..run[1]].sort_by(|&a, &b| {
                compare_label_slices(&samples[a].labels.tail, &samples[b].labels.tail)
            });
        }
    }
    let mut slots: Vec<Option<Sample>> = samples.drain(..).map(Some).collect();
    let mut dropped = 0;
    let mut last_key = None;
    for &i in &order {
        let Some(sample) = slots[i].take() else {
            continue;
        };
        let duplicate = last_key == Some(keys[i])
            && samples.last().is_some_and(|last: &Sample| {
                compare_label_slices(&last.labels.tail, &sample.labels.tail) == Ordering::Equal
            });
        if duplicate {
            dropped += 1;
            continue;
        }
        last_key = Some(keys[i]);
        samples.push(sample);
    }
    dropped
}

fn compare_label_slices(a: &[Label], b: &[Label]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = x.name.cmp(y.name).then_with(|| {
            if Arc::ptr_eq(&x.value, &y.value) {
                Ordering::Equal
            } else {
                natural_cmp(&x.value, &y.value)
            }
        });
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Compares strings so that runs of ASCII digits compare by numeric value.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            // Strip leading zeros, then a longer run is a larger number.
            let x = trim_zeros(&a[si..i]);
            let y = trim_zeros(&b[sj..j]);
            let ord = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    // Equal so far: the shorter remainder first; fall back to bytes so "01" != "1" stays total.
    (a.len() - i).cmp(&(b.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&'static str, &str)]) -> Labels {
        Labels {
            head: pairs.iter().map(|(k, v)| Label::new(k, *v)).collect(),
            tail: Tail::default(),
        }
    }

    #[test]
    fn natural_order_puts_cpu_2_before_cpu_10() {
        assert_eq!(natural_cmp("2", "10"), Ordering::Less);
        assert_eq!(natural_cmp("cpu10", "cpu9"), Ordering::Greater);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
        assert_ne!(natural_cmp("01", "1"), Ordering::Equal);
    }

    #[test]
    fn finish_sorts_and_drops_duplicate_series() {
        let mut b = FamiliesBuilder::new();
        for cpu in ["10", "2", "2"] {
            b.push(
                "xen_host_cpu".into(),
                |_| ("help".into(), Kind::Gauge),
                Sample {
                    labels: labels(&[("cpu", cpu)]),
                    value: 1.0,
                },
            );
        }
        b.push(
            "xen_a".into(),
            |_| ("help".into(), Kind::Gauge),
            Sample {
                labels: Labels::none(),
                value: 1.0,
            },
        );
        let (families, dropped) = b.finish();
        assert_eq!(dropped, 1);
        assert_eq!(families[0].name, "xen_a");
        let cpus: Vec<_> = families[1]
            .samples
            .iter()
            .map(|s| s.labels.head[0].value.to_string())
            .collect();
        assert_eq!(cpus, ["2", "10"]);
    }

    #[test]
    fn finish_orders_by_head_then_tail_across_interleaved_heads() {
        let vm = |name: &str| -> Arc<[Label]> { Arc::from(vec![Label::new("vm", name)]) };
        let (b_head, a_head) = (vm("b"), vm("a"));
        let mut b = FamiliesBuilder::new();
        for (head, cpu) in [
            (&b_head, "1"),
            (&a_head, "10"),
            (&b_head, "0"),
            (&a_head, "9"),
            (&b_head, "1"),
        ] {
            let tail = Tail::from([Label::new("cpu", cpu)]);
            b.push(
                "xen_vm_cpu".into(),
                |_| ("help".into(), Kind::Gauge),
                Sample {
                    labels: Labels {
                        head: head.clone(),
                        tail,
                    },
                    value: 1.0,
                },
            );
        }
        let (families, dropped) = b.finish();
        assert_eq!(dropped, 1);
        let order: Vec<String> = families[0]
            .samples
            .iter()
            .map(|s| format!("{}{}", s.labels.head[0].value, s.labels.tail[0].value))
            .collect();
        assert_eq!(order, ["a9", "a10", "b0", "b1"]);
    }
}

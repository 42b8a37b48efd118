//! Series maps: how each column of one host's RRD row becomes a series, with its labels
//! already escaped and rendered. Between two scrapes of a steady pool only the values change,
//! so a map built once turns every later row into exposition text without a sample, a label
//! or a sort per column.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::catalog::Scale;
use super::encode::{write_label, write_value};
use super::{Kind, Label, Tail};

/// What one column becomes: indices into its map's families, heads and tails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Series {
    pub(super) family: u32,
    pub(super) head: u32,
    pub(super) tail: u32,
}

/// Marks a column that yields no series (wrong consolidation function, unknown owner type).
const NONE: u32 = u32::MAX;

/// A family as a map knows it.
#[derive(Debug, Clone)]
pub(super) struct MapFamily {
    pub(super) name: Cow<'static, str>,
    pub(super) help: Cow<'static, str>,
    pub(super) kind: Kind,
    /// How its values convert to the unit its name says.
    pub(super) scale: Scale,
}

/// The series of every column of one host's rows, built by [`SeriesMapBuilder`].
pub struct SeriesMap {
    pub(super) families: Vec<MapFamily>,
    /// Kept as labels too: the layout sorts series by comparing them.
    pub(super) heads: Vec<Arc<[Label]>>,
    pub(super) tails: Vec<Tail>,
    /// Heads rendered as `{a="x",b="y"` (nothing for no labels), tails as `,c="z"` per label.
    text: Vec<u8>,
    head_text: Vec<Range<u32>>,
    tail_text: Vec<Range<u32>>,
    columns: Vec<Series>,
    /// Some family converts its values: only then does a frame look at each column's scale,
    /// so that the compatible naming formats values exactly as before, at no cost.
    scaled: bool,
}

impl fmt::Debug for SeriesMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesMap")
            .field("columns", &self.columns.len())
            .field("families", &self.families.len())
            .field("heads", &self.heads.len())
            .field("tails", &self.tails.len())
            .field("text_bytes", &self.text.len())
            .finish()
    }
}

impl SeriesMap {
    /// Number of columns (legend entries) the map covers.
    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    pub(super) fn series(&self, column: usize) -> Option<Series> {
        self.columns
            .get(column)
            .copied()
            .filter(|s| s.family != NONE)
    }

    pub(super) fn head_text(&self, head: usize) -> &[u8] {
        self.slice(&self.head_text[head])
    }

    pub(super) fn tail_text(&self, tail: usize) -> &[u8] {
        self.slice(&self.tail_text[tail])
    }

    fn slice(&self, range: &Range<u32>) -> &[u8] {
        &self.text[range.start as usize..range.end as usize]
    }
}

/// Builds a [`SeriesMap`] column by column.
#[derive(Debug)]
pub struct SeriesMapBuilder {
    map: SeriesMap,
    families: FxHashMap<Cow<'static, str>, u32>,
    tails: FxHashMap<Vec<u8>, u32>,
}

impl SeriesMapBuilder {
    /// A map of `columns` columns, none of which yields a series yet.
    pub fn new(columns: usize) -> SeriesMapBuilder {
        SeriesMapBuilder {
            map: SeriesMap {
                families: Vec::new(),
                heads: Vec::new(),
                tails: Vec::new(),
                text: Vec::new(),
                head_text: Vec::new(),
                tail_text: Vec::new(),
                columns: vec![
                    Series {
                        family: NONE,
                        head: NONE,
                        tail: NONE,
                    };
                    columns
                ],
                scaled: false,
            },
            families: FxHashMap::default(),
            tails: FxHashMap::default(),
        }
    }

    /// The index of the family `name`; `meta` is called only when the family is new, as in
    /// [`super::FamiliesBuilder::family`].
    pub fn family(
        &mut self,
        name: Cow<'static, str>,
        meta: impl FnOnce(&str) -> (Cow<'static, str>, Kind),
    ) -> u32 {
        self.scaled_family(name, Scale::One, meta)
    }

    /// [`SeriesMapBuilder::family`] for a family whose values are converted by `scale` (the
    /// scale of its first call counts).
    pub fn scaled_family(
        &mut self,
        name: Cow<'static, str>,
        scale: Scale,
        meta: impl FnOnce(&str) -> (Cow<'static, str>, Kind),
    ) -> u32 {
        if let Some(&index) = self.families.get(name.as_ref()) {
            return index;
        }
        let (help, kind) = meta(&name);
        let index = to_u32(self.map.families.len());
        self.families.insert(name.clone(), index);
        self.map.scaled |= scale != Scale::One;
        self.map.families.push(MapFamily {
            name,
            help,
            kind,
            scale,
        });
        index
    }

    /// The index of a new head; callers add each object's head once.
    pub fn head(&mut self, head: Arc<[Label]>) -> u32 {
        let start = self.map.text.len();
        let text = &mut self.map.text;
        for (i, label) in head.iter().enumerate() {
            text.push(if i == 0 { b'{' } else { b',' });
            write_label(text, label);
        }
        self.map.head_text.push(to_u32(start)..to_u32(text.len()));
        self.map.heads.push(head);
        to_u32(self.map.heads.len() - 1)
    }

    /// The index of a tail; equal tails share one.
    pub fn tail(&mut self, tail: Tail) -> u32 {
        let mut rendered = Vec::new();
        for label in &tail {
            rendered.push(b',');
            write_label(&mut rendered, label);
        }
        if let Some(&index) = self.tails.get(&rendered) {
            return index;
        }
        let index = to_u32(self.map.tails.len());
        let start = self.map.text.len();
        self.map.text.extend_from_slice(&rendered);
        self.map
            .tail_text
            .push(to_u32(start)..to_u32(self.map.text.len()));
        self.map.tails.push(tail);
        self.tails.insert(rendered, index);
        index
    }

    /// Makes `column` yield the series of `family` (from [`SeriesMapBuilder::family`]) with
    /// `head` and `tail`.
    pub fn set(&mut self, column: usize, family: u32, head: u32, tail: u32) {
        debug_assert!((family as usize) < self.map.families.len());
        debug_assert!((head as usize) < self.map.heads.len());
        debug_assert!((tail as usize) < self.map.tails.len());
        self.map.columns[column] = Series { family, head, tail };
    }

    /// The finished map.
    pub fn finish(mut self) -> SeriesMap {
        self.map.text.shrink_to_fit();
        self.map.families.shrink_to_fit();
        self.map.heads.shrink_to_fit();
        self.map.head_text.shrink_to_fit();
        self.map
    }
}

/// A map holds at most one series per legend entry and a few bytes of text per series; a
/// body large enough to overflow 32 bits would have been refused long before.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("series map larger than 4 GiB")
}

/// One host's newest row, as the text the encoder writes, with the map that names its columns.
#[derive(Debug, Clone)]
pub struct Frame {
    pub(super) map: Arc<SeriesMap>,
    /// The value of each column, formatted, end to end; a column without a value (NaN, or no
    /// series) has none.
    pub(super) text: Vec<u8>,
    /// End of each column's text in `text`; it starts where the previous one's ends.
    pub(super) ends: Vec<u32>,
}

impl Frame {
    /// A row and its map; missing trailing values count as NaN (absent), extra ones are
    /// ignored. The values are formatted here, in the host's own task while other hosts are
    /// still downloading, rather than by the encoder once all have arrived.
    pub fn new(map: Arc<SeriesMap>, values: &[f64]) -> Frame {
        let mut text = Vec::with_capacity(map.columns.len() * 8);
        let mut ends = Vec::with_capacity(map.columns.len());
        for (column, series) in map.columns.iter().enumerate() {
            if let Some(&value) = values.get(column)
                && series.family != NONE
                && !value.is_nan()
            {
                let value = if map.scaled {
                    map.families[series.family as usize].scale.apply(value)
                } else {
                    value
                };
                write_value(&mut text, value);
            }
            ends.push(to_u32(text.len()));
        }
        Frame { map, text, ends }
    }

    /// The map that names the row's columns.
    pub fn map(&self) -> &Arc<SeriesMap> {
        &self.map
    }

    /// The text of `column`'s value; empty when it has none.
    pub(super) fn value(&self, column: usize) -> &[u8] {
        let start = column.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.text[start as usize..self.ends[column] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_the_text_of_each_value_of_a_series() {
        let vm = |name: &str| -> Arc<[Label]> { Arc::from(vec![Label::new("vm", name)]) };
        let meta = |_: &str| (Cow::Borrowed("help"), Kind::Gauge);
        // Column 4 yields no series.
        let mut map = SeriesMapBuilder::new(5);
        let memory = map.family("xen_vm_memory".into(), meta);
        let cpu = map.family("xen_vm_cpu".into(), meta);
        let (b, a10, a9) = (map.head(vm("b")), map.head(vm("a10")), map.head(vm("a9")));
        let none = map.tail(Tail::default());
        map.set(0, memory, b, none);
        map.set(1, cpu, b, none);
        map.set(2, cpu, a10, none);
        map.set(3, cpu, a9, none);
        let frame = Frame::new(Arc::new(map.finish()), &[1.0, 2.5, f64::NAN, 4.0, 5.0]);
        let texts: Vec<&[u8]> = (0..5).map(|c| frame.value(c)).collect();
        assert_eq!(texts, [&b"1"[..], b"2.5", b"", b"4", b""]);
    }

    #[test]
    fn a_scaled_family_converts_its_values_and_only_its_own() {
        let head: Arc<[Label]> = Arc::from(vec![Label::new("host", "h")]);
        let meta = |_: &str| (Cow::Borrowed("help"), Kind::Gauge);
        let mut map = SeriesMapBuilder::new(3);
        let free = map.scaled_family("xen_host_memory_free_bytes".into(), Scale::Kib, meta);
        let latency =
            map.scaled_family("xen_host_latency_seconds".into(), Scale::Microseconds, meta);
        let load = map.family("xen_host_loadavg".into(), meta);
        let (head, none) = (map.head(head), map.tail(Tail::default()));
        map.set(0, free, head, none);
        map.set(1, latency, head, none);
        map.set(2, load, head, none);
        let frame = Frame::new(Arc::new(map.finish()), &[1536.5, 250.0, 0.75]);
        let texts: Vec<&[u8]> = (0..3).map(|c| frame.value(c)).collect();
        assert_eq!(texts, [&b"1573376"[..], b"0.00025", b"0.75"]);
        // A map without a converted family is not marked, and writes values as they come.
        let mut plain = SeriesMapBuilder::new(1);
        let load = plain.scaled_family("xen_host_loadavg".into(), Scale::One, meta);
        let head = plain.head(Arc::from(vec![Label::new("host", "h")]));
        let none = plain.tail(Tail::default());
        plain.set(0, load, head, none);
        let plain = plain.finish();
        assert!(!plain.scaled);
        assert_eq!(Frame::new(Arc::new(plain), &[1536.5]).value(0), b"1536.5");
    }
}

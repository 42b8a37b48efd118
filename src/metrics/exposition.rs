//! What a scrape hands the encoder: families built sample by sample, plus the hosts' rows with
//! the sorted order of their series, which is computed once and reused for as long as the
//! hosts' series maps stay the same. The encoder interleaves the two by family name, so the
//! text is exactly what sorting every sample would give.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::encode::{self, Format, sample_suffix, write_header, write_value};
use super::series::{Frame, SeriesMap};
use super::{Family, Kind, compare_label_slices};

/// One series of a [`Layout`]: where its value and labels are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u32,
    /// The column, with [`SAME_AS_PREVIOUS`] set when the entry has the same labels as the one
    /// before it: of such a run only the first entry with a value is written.
    column: u32,
}

const SAME_AS_PREVIOUS: u32 = 1 << 31;

#[derive(Debug)]
struct LayoutFamily {
    name: Cow<'static, str>,
    help: Cow<'static, str>,
    kind: Kind,
    /// End of the family's entries; they start where the previous family's end.
    end: usize,
}

/// The families of a list of series maps, sorted by name, and their series in the order the
/// sample path sorts them: by head (natural order of label values), then tail, and for equal
/// labels by map and column.
pub struct Layout {
    maps: Vec<Arc<SeriesMap>>,
    families: Vec<LayoutFamily>,
    entries: Vec<Entry>,
    duplicates: bool,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("maps", &self.maps.len())
            .field("families", &self.families.len())
            .field("entries", &self.entries.len())
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

impl Layout {
    /// The layout of `maps`, whose rows will be given in this order.
    pub fn new(maps: &[Arc<SeriesMap>]) -> Layout {
        let mut by_name: FxHashMap<&str, usize> = FxHashMap::default();
        let mut families: Vec<LayoutFamily> = Vec::new();
        let local: Vec<Vec<usize>> = maps
            .iter()
            .map(|map| {
                map.families
                    .iter()
                    .map(|f| {
                        *by_name.entry(f.name.as_ref()).or_insert_with(|| {
                            families.push(LayoutFamily {
                                name: f.name.clone(),
                                help: f.help.clone(),
                                kind: f.kind,
                                end: 0,
                            });
                            families.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let mut order: Vec<usize> = (0..families.len()).collect();
        order.sort_by(|&a, &b| families[a].name.cmp(&families[b].name));
        let mut position = vec![0; families.len()];
        for (sorted, &original) in order.iter().enumerate() {
            position[original] = sorted;
        }

        // Heads ranked once across all maps, equal heads sharing a rank, so that sorting
        // compares two numbers before it compares any tail.
        let mut heads: Vec<(usize, usize)> = maps
            .iter()
            .enumerate()
            .flat_map(|(m, map)| (0..map.heads.len()).map(move |h| (m, h)))
            .collect();
        heads.sort_by(|&(am, ah), &(bm, bh)| {
            compare_label_slices(&maps[am].heads[ah], &maps[bm].heads[bh])
        });
        let mut ranks: Vec<Vec<u32>> = maps.iter().map(|m| vec![0; m.heads.len()]).collect();
        let mut rank = 0u32;
        for i in 0..heads.len() {
            let (m, h) = heads[i];
            if i > 0 {
                let (pm, ph) = heads[i - 1];
                if compare_label_slices(&maps[pm].heads[ph], &maps[m].heads[h]) != Ordering::Equal {
                    rank += 1;
                }
            }
            ranks[m][h] = rank;
        }

        // Entries grouped by sorted family, in map then column order within each family.
        let mut counts = vec![0usize; families.len() + 1];
        for (m, map) in maps.iter().enumerate() {
            for column in 0..map.columns() {
                if let Some(series) = map.series(column) {
                    counts[position[local[m][series.family as usize]] + 1] += 1;
                }
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let mut next = counts.clone();
        let mut keyed = vec![(0u32, Entry { slot: 0, column: 0 }); counts[families.len()]];
        for (m, map) in maps.iter().enumerate() {
            for column in 0..map.columns() {
                if let Some(series) = map.series(column) {
                    let f = position[local[m][series.family as usize]];
                    keyed[next[f]] = (
                        ranks[m][series.head as usize],
                        Entry {
                            slot: m as u32,
                            column: column as u32,
                        },
                    );
                    next[f] += 1;
                }
            }
        }
        let tail = |entry: &Entry| {
            let map = &maps[entry.slot as usize];
            let column = (entry.column & !SAME_AS_PREVIOUS) as usize;
            let series = map.series(column).map(|s| s.tail as usize);
            &map.tails[series.unwrap_or_default()]
        };
        let mut duplicates = false;
        for f in 0..families.len() {
            let run = &mut keyed[counts[f]..counts[f + 1]];
            // Stable, so equal labels keep map and column order and the first one wins.
            run.sort_by(|(ra, a), (rb, b)| {
                ra.cmp(rb)
                    .then_with(|| compare_label_slices(tail(a), tail(b)))
            });
            for i in 1..run.len() {
                let (ra, a) = run[i - 1];
                let (rb, b) = run[i];
                if ra == rb && compare_label_slices(tail(&a), tail(&b)) == Ordering::Equal {
                    run[i].1.column |= SAME_AS_PREVIOUS;
                    duplicates = true;
                }
            }
        }
        let entries: Vec<Entry> = keyed.into_iter().map(|(_, e)| e).collect();
        let mut sorted: Vec<Option<LayoutFamily>> = families.into_iter().map(Some).collect();
        let families = order
            .iter()
            .enumerate()
            .filter_map(|(i, &original)| {
                let mut family = sorted[original].take()?;
                family.end = counts[i + 1];
                Some(family)
            })
            .collect();
        Layout {
            maps: maps.to_vec(),
            families,
            entries,
            duplicates,
        }
    }

    /// Whether this layout was built for exactly these maps, in this order.
    fn is_for(&self, maps: &[Arc<SeriesMap>]) -> bool {
        self.maps.len() == maps.len() && self.maps.iter().zip(maps).all(|(a, b)| Arc::ptr_eq(a, b))
    }

    pub(super) fn has_family(&self, name: &str) -> bool {
        self.families
            .binary_search_by(|f| f.name.as_ref().cmp(name))
            .is_ok()
    }

    fn entries(&self, family: usize) -> &[Entry] {
        let start = family.checked_sub(1).map_or(0, |p| self.families[p].end);
        &self.entries[start..self.families[family].end]
    }

    /// How many series the rows `values` repeat: the ones that would be dropped as duplicates.
    fn dropped(&self, values: &[Vec<f64>]) -> usize {
        if !self.duplicates {
            return 0;
        }
        let mut dropped = 0;
        let mut written = false;
        for entry in &self.entries {
            let column = entry.column & !SAME_AS_PREVIOUS;
            if entry.column & SAME_AS_PREVIOUS == 0 {
                written = false;
            }
            if values[entry.slot as usize][column as usize].is_nan() {
                continue;
            }
            if written {
                dropped += 1;
            }
            written = true;
        }
        dropped
    }
}

/// The last layout built, reused while the same maps come back in the same order.
#[derive(Debug, Default)]
pub struct LayoutCache {
    last: Mutex<Option<Arc<Layout>>>,
}

impl LayoutCache {
    /// An empty cache.
    pub fn new() -> LayoutCache {
        LayoutCache::default()
    }

    /// The layout of `maps`, built only if it is not the last one.
    pub fn get(&self, maps: &[Arc<SeriesMap>]) -> Arc<Layout> {
        if let Some(layout) = self
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|l| l.is_for(maps))
        {
            return layout.clone();
        }
        let layout = Arc::new(Layout::new(maps));
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(layout.clone());
        layout
    }
}

#[derive(Debug)]
struct Rows {
    layout: Arc<Layout>,
    values: Vec<Vec<f64>>,
}

/// A finished collection, ready to be encoded any number of times in either format.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Sorted by name and free of duplicates; no name is also a family of `rows`.
    families: Vec<Family>,
    rows: Option<Rows>,
}

/// Where an encoding of an [`Exposition`] stands, for encoding it piece by piece.
#[derive(Debug, Default)]
pub struct Cursor {
    family: usize,
    row_family: usize,
    entry: usize,
    header_written: bool,
    group_written: bool,
    done: bool,
}

impl Exposition {
    /// An exposition of families already sorted and free of duplicates.
    pub fn from_families(families: Vec<Family>) -> Exposition {
        Exposition {
            families,
            rows: None,
        }
    }

    /// Families sorted and deduplicated, and the rows of `frames` laid out by `layout`, which
    /// must be the layout of their maps and share no family name with `families`. Returns the
    /// number of duplicate series the rows will not write.
    pub(super) fn with_rows(
        families: Vec<Family>,
        layout: Arc<Layout>,
        frames: Vec<Frame>,
    ) -> (Exposition, usize) {
        let values: Vec<Vec<f64>> = frames.into_iter().map(|f| f.values).collect();
        let dropped = layout.dropped(&values);
        (
            Exposition {
                families,
                rows: Some(Rows { layout, values }),
            },
            dropped,
        )
    }

    /// Number of families, counting those of the rows whether or not they have a value.
    pub fn family_count(&self) -> usize {
        self.families.len() + self.rows.as_ref().map_or(0, |r| r.layout.families.len())
    }

    /// Encodes the whole exposition.
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        let mut cursor = Cursor::default();
        while !self.encode_some(&mut cursor, format, out, usize::MAX) {}
    }

    /// Appends the next part of the encoding, stopping at a line boundary once `out` holds at
    /// least `limit` bytes; true when the encoding is complete.
    pub fn encode_some(
        &self,
        cursor: &mut Cursor,
        format: Format,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> bool {
        if cursor.done {
            return true;
        }
        let row_families: &[LayoutFamily] = self
            .rows
            .as_ref()
            .map_or(&[], |r| r.layout.families.as_slice());
        loop {
            if out.len() >= limit {
                return false;
            }
            let family = self.families.get(cursor.family);
            let row_family = row_families.get(cursor.row_family);
            match (family, row_family) {
                (None, None) => {
                    encode::encode_end(format, out);
                    cursor.done = true;
                    return true;
                }
                (Some(f), Some(r)) if f.name < r.name => {
                    encode::encode_family(f, format, out);
                    cursor.family += 1;
                }
                (Some(f), None) => {
                    encode::encode_family(f, format, out);
                    cursor.family += 1;
                }
                (_, Some(_)) => {
                    if let Some(rows) = &self.rows
                        && self.encode_rows(rows, cursor, format, out, limit)
                    {
                        cursor.row_family += 1;
                        cursor.entry = 0;
                        cursor.header_written = false;
                        cursor.group_written = false;
                    }
                }
            }
        }
    }

    /// Continues the row family at the cursor; true when it is complete. A family whose every
    /// value is missing writes nothing at all, as the sample path drops empty families.
    fn encode_rows(
        &self,
        rows: &Rows,
        cursor: &mut Cursor,
        format: Format,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> bool {
        let layout = &rows.layout;
        let family = &layout.families[cursor.row_family];
        let entries = layout.entries(cursor.row_family);
        let suffix = sample_suffix(&family.name, family.kind, format);
        let name = family.name.as_bytes();
        while let Some(entry) = entries.get(cursor.entry) {
            cursor.entry += 1;
            let column = (entry.column & !SAME_AS_PREVIOUS) as usize;
            if entry.column & SAME_AS_PREVIOUS == 0 {
                cursor.group_written = false;
            }
            let slot = entry.slot as usize;
            let value = rows.values[slot][column];
            if value.is_nan() || cursor.group_written {
                continue;
            }
            cursor.group_written = true;
            if !cursor.header_written {
                write_header(&family.name, &family.help, family.kind, format, out);
                cursor.header_written = true;
            }
            let map = &layout.maps[slot];
            if let Some(series) = map.series(column) {
                out.extend_from_slice(name);
                out.extend_from_slice(suffix);
                map.write_labels(series, out);
                out.push(b' ');
                write_value(out, value);
                out.push(b'\n');
            }
            if out.len() >= limit {
                return cursor.entry == entries.len();
            }
        }
        true
    }
}

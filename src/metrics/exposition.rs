//! What a collection hands the encoder: the hosts' rows with the sorted order of their series
//! (a [`Layout`], computed once and reused for as long as the hosts' series maps stay the
//! same), and the few families the exporter builds sample by sample (`xen_host_up`, SR
//! capacity, its own health). The encoder interleaves the two by family name.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::encode::{self, Format, sample_suffix, write_header};
use super::series::{Frame, SeriesMap};
use super::{Family, Kind, compare_label_slices};

/// One series of a [`Layout`]: where its value and labels are, all in the layout itself, so
/// that encoding reads entries in order instead of chasing each map.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The value's column in its frame, with [`SAME_AS_PREVIOUS`] set
    /// when the entry has the same labels as the one before it: of such a run only the first
    /// entry with a value is written.
    value: u32,
    /// The map, and the row of this scrape, the entry belongs to.
    slot: u32,
    head: u32,
    tail: u32,
}

const SAME_AS_PREVIOUS: u32 = 1 << 31;

impl Entry {
    fn value(self) -> usize {
        (self.value & !SAME_AS_PREVIOUS) as usize
    }

    fn same_as_previous(self) -> bool {
        self.value & SAME_AS_PREVIOUS != 0
    }
}

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
    /// Rendered heads and tails of every map, as [`SeriesMap`] renders them.
    text: Vec<u8>,
    heads: Vec<(u32, u32)>,
    tails: Vec<(u32, u32)>,
    duplicates: bool,
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("maps", &self.maps.len())
            .field("families", &self.families.len())
            .field("entries", &self.entries.len())
            .field("text_bytes", &self.text.len())
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

/// An entry while sorting: its map and column find its tail.
#[derive(Debug, Clone, Copy)]
struct Keyed {
    rank: u32,
    map: u32,
    column: u32,
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
        let empty = Keyed {
            rank: 0,
            map: 0,
            column: 0,
        };
        let mut keyed = vec![empty; counts[families.len()]];
        for (m, map) in maps.iter().enumerate() {
            for column in 0..map.columns() {
                if let Some(series) = map.series(column) {
                    let f = position[local[m][series.family as usize]];
                    keyed[next[f]] = Keyed {
                        rank: ranks[m][series.head as usize],
                        map: to_u32(m),
                        column: to_u32(column),
                    };
                    next[f] += 1;
                }
            }
        }
        let series = |k: &Keyed| {
            maps[k.map as usize]
                .series(k.column as usize)
                .expect("only columns with a series are keyed")
        };
        let tail = |k: &Keyed| &maps[k.map as usize].tails[series(k).tail as usize];
        let mut same = vec![false; keyed.len()];
        for f in 0..families.len() {
            let run = &mut keyed[counts[f]..counts[f + 1]];
            // Stable, so equal labels keep map and column order and the first one wins.
            run.sort_by(|a, b| {
                a.rank
                    .cmp(&b.rank)
                    .then_with(|| compare_label_slices(tail(a), tail(b)))
            });
            for i in 1..run.len() {
                let (a, b) = (&run[i - 1], &run[i]);
                same[counts[f] + i] =
                    a.rank == b.rank && compare_label_slices(tail(a), tail(b)) == Ordering::Equal;
            }
        }

        // The maps' label text copied together, heads in their sorted order, which is the
        // order the encoder reads them in.
        let mut text = Vec::new();
        let mut head_base = Vec::with_capacity(maps.len());
        let mut tail_base = Vec::with_capacity(maps.len());
        let mut head_count = 0;
        for map in maps {
            head_base.push(to_u32(head_count));
            head_count += map.heads.len();
        }
        let mut head_spans = vec![(0, 0); head_count];
        for &(m, h) in &heads {
            let start = to_u32(text.len());
            text.extend_from_slice(maps[m].head_text(h));
            head_spans[head_base[m] as usize + h] = (start, to_u32(text.len()));
        }
        let mut tail_spans = Vec::new();
        for map in maps {
            tail_base.push(to_u32(tail_spans.len()));
            for t in 0..map.tails.len() {
                let start = to_u32(text.len());
                text.extend_from_slice(map.tail_text(t));
                tail_spans.push((start, to_u32(text.len())));
            }
        }
        let entries: Vec<Entry> = keyed
            .iter()
            .zip(&same)
            .map(|(k, &same)| {
                let m = k.map as usize;
                let s = series(k);
                let value = k.column;
                Entry {
                    slot: k.map,
                    value: if same {
                        value | SAME_AS_PREVIOUS
                    } else {
                        value
                    },
                    head: head_base[m] + s.head,
                    tail: tail_base[m] + s.tail,
                }
            })
            .collect();
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
            text,
            heads: head_spans,
            tails: tail_spans,
            duplicates: same.contains(&true),
        }
    }

    /// Whether this layout was built for exactly these maps, in this order.
    fn is_for(&self, maps: &[Arc<SeriesMap>]) -> bool {
        self.maps.len() == maps.len() && self.maps.iter().zip(maps).all(|(a, b)| Arc::ptr_eq(a, b))
    }

    fn entries(&self, family: usize) -> &[Entry] {
        let start = family.checked_sub(1).map_or(0, |p| self.families[p].end);
        &self.entries[start..self.families[family].end]
    }

    /// Appends the labels of an entry as the sample encoder writes them, braces included.
    fn write_labels(&self, entry: Entry, out: &mut Vec<u8>) {
        let (hs, he) = self.heads[entry.head as usize];
        let (ts, te) = self.tails[entry.tail as usize];
        let head = &self.text[hs as usize..he as usize];
        let tail = &self.text[ts as usize..te as usize];
        match (head.is_empty(), tail.split_first()) {
            (false, _) => {
                out.extend_from_slice(head);
                out.extend_from_slice(tail);
                out.push(b'}');
            }
            (true, Some((_comma, rest))) => {
                out.push(b'{');
                out.extend_from_slice(rest);
                out.push(b'}');
            }
            (true, None) => {}
        }
    }

    /// How many series of `rows` are not written as duplicates of another.
    fn dropped(&self, rows: &Rows) -> usize {
        if !self.duplicates {
            return 0;
        }
        let mut dropped = 0;
        let mut written = false;
        for &entry in &self.entries {
            if !entry.same_as_previous() {
                written = false;
            }
            if rows.value(entry).is_empty() {
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

/// Layouts index with 32 bits; a pool would need billions of series to overflow them.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("layout larger than 2^32")
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
    /// One per map of the layout, in its order.
    frames: Vec<Frame>,
    /// Per family of the layout: left out, because the exporter writes a family of that name
    /// itself (its own families win, so that no name appears twice).
    skip: Vec<bool>,
}

impl Rows {
    /// The value text of an entry; empty when it has no value.
    fn value(&self, entry: Entry) -> &[u8] {
        self.frames[entry.slot as usize].value(entry.value())
    }
}

/// A finished collection, ready to be encoded any number of times in either format.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Sorted by name and free of duplicates.
    families: Vec<Family>,
    rows: Option<Rows>,
}

/// Families encoded once in one format, kept compressed, to be written by many responses:
/// the deflate stream as it is into a gzip response, the LZ4 pieces expanded one at a time
/// into a plain one.
///
/// Only compressed text is kept between scrapes: the record families of a large pool are
/// megabytes of text, held for as long as the inventory does not change. Deflate is what a
/// gzip response needs and is the smaller; a plain response expanding it would spend more
/// CPU on that than on anything else it does, which LZ4 cuts several times over.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Their text compressed, without the OpenMetrics end marker.
    pub deflated: Deflated,
    /// The same text for plain responses, in pieces compressed with LZ4 each on its own.
    pieces: Vec<Lz4Piece>,
    /// Their names, sorted.
    pub names: Vec<Cow<'static, str>>,
}

/// [`PIECE`] bytes of text (fewer for the last) compressed with LZ4 on their own.
#[derive(Debug)]
struct Lz4Piece {
    len: usize,
    compressed: Box<[u8]>,
}

impl Lz4Piece {
    fn new(text: &[u8]) -> Lz4Piece {
        Lz4Piece {
            len: text.len(),
            compressed: lz4_flex::block::compress(text).into_boxed_slice(),
        }
    }
}

/// Text compressed once for many responses: a raw deflate stream that ends on a byte
/// boundary without a final block (a sync flush), so that a gzip response's own compressor
/// carries on right after it, and the CRC-32 and length of the text for the gzip trailer.
#[derive(Debug, Default)]
pub struct Deflated {
    /// The compressed text.
    pub bytes: Vec<u8>,
    /// CRC-32 and length of the text.
    pub crc: flate2::Crc,
}

impl Rendered {
    /// Encodes `families` in `format` and compresses the text as it goes: each family's
    /// samples are dropped once written, and the text never exists whole.
    pub fn new(families: Vec<Family>, format: Format) -> Rendered {
        let mut names: Vec<_> = families.iter().map(|f| f.name.clone()).collect();
        names.sort_unstable();
        let mut deflate =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut crc = flate2::Crc::new();
        let mut scratch = Vec::new();
        let mut pieces = Vec::new();
        let mut piece = Vec::with_capacity(PIECE);
        for family in families {
            scratch.clear();
            encode::encode_family(&family, format, &mut scratch);
            drop(family);
            crc.update(&scratch);
            // Writing into a Vec cannot fail.
            let _ = deflate.write_all(&scratch);
            let mut rest = &scratch[..];
            while !rest.is_empty() {
                let take = rest.len().min(PIECE - piece.len());
                piece.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if piece.len() == PIECE {
                    pieces.push(Lz4Piece::new(&piece));
                    piece.clear();
                }
            }
        }
        if !piece.is_empty() {
            pieces.push(Lz4Piece::new(&piece));
        }
        // A sync flush: everything is out, on a byte boundary, and the stream not finished.
        let _ = deflate.flush();
        let mut bytes = std::mem::take(deflate.get_mut());
        bytes.shrink_to_fit();
        Rendered {
            deflated: Deflated { bytes, crc },
            pieces,
            names,
        }
    }

    /// The length of the text.
    pub fn text_len(&self) -> usize {
        usize::try_from(self.deflated.crc.amount()).unwrap_or(usize::MAX)
    }

    /// The text, for a plain response: expanded piece by piece as the response writes it,
    /// so that a response holds a piece at a time, never the whole text. A shared expanded
    /// copy held while plain responses write it added megabytes beside the collection.
    pub fn pieces(self: &Arc<Self>) -> Pieces {
        Pieces {
            rendered: self.clone(),
            next: 0,
        }
    }

    /// The whole text (tests).
    #[cfg(test)]
    pub fn text(self: &Arc<Self>) -> Vec<u8> {
        self.pieces().flatten().collect()
    }
}

/// Bytes of text a plain response expands at a time: small, since each of the responses in
/// flight holds one or two (the one it writes and the one queued).
const PIECE: usize = 64 * 1024;

/// The text of a [`Rendered`], expanded one piece at a time.
#[derive(Debug)]
pub struct Pieces {
    rendered: Arc<Rendered>,
    next: usize,
}

impl Iterator for Pieces {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let piece = self.rendered.pieces.get(self.next)?;
        self.next += 1;
        // The pieces are our own; an error would be a bug, and ends the text short rather
        // than failing the response.
        lz4_flex::block::decompress(&piece.compressed, piece.len).ok()
    }
}

/// Where an encoding of an [`Exposition`] stands, for encoding it piece by piece.
#[derive(Debug, Default)]
pub struct Cursor {
    /// Families not to write, sorted: those the response has from elsewhere (the record
    /// families, written before the collection).
    skip: Vec<Cow<'static, str>>,
    family: usize,
    row_family: usize,
    entry: usize,
    header_written: bool,
    group_written: bool,
    done: bool,
}

impl Cursor {
    /// A cursor at the start that passes over the families named `names`.
    pub fn skipping(names: impl IntoIterator<Item = Cow<'static, str>>) -> Cursor {
        let mut skip: Vec<_> = names.into_iter().collect();
        skip.sort_unstable();
        Cursor {
            skip,
            ..Cursor::default()
        }
    }

    fn skips(&self, name: &str) -> bool {
        !self.skip.is_empty() && self.skip.binary_search_by(|n| n.as_ref().cmp(name)).is_ok()
    }
}

impl Exposition {
    /// An exposition of families already sorted and free of duplicates.
    pub fn from_families(families: Vec<Family>) -> Exposition {
        Exposition {
            families,
            rows: None,
        }
    }

    /// The exporter's own `families` (sorted and free of duplicates, as
    /// [`super::FamiliesBuilder::finish`] leaves them) and the hosts' rows, laid out by the
    /// cached layout of their maps. A row family named like one of `families` is left out:
    /// the exporter's own family wins, so that no name appears twice. Returns the exposition
    /// and the number of duplicate series it leaves out.
    pub fn new(
        families: Vec<Family>,
        frames: Vec<Frame>,
        layouts: &LayoutCache,
    ) -> (Exposition, usize) {
        if frames.is_empty() {
            return (Exposition::from_families(families), 0);
        }
        let maps: Vec<Arc<SeriesMap>> = frames.iter().map(|f| f.map.clone()).collect();
        let layout = layouts.get(&maps);
        let skip = layout
            .families
            .iter()
            .map(|r| families.binary_search_by(|f| f.name.cmp(&r.name)).is_ok())
            .collect();
        let rows = Rows {
            layout,
            frames,
            skip,
        };
        let dropped = rows.layout.dropped(&rows);
        (
            Exposition {
                families,
                rows: Some(rows),
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
            let row = row_families.get(cursor.row_family).zip(self.rows.as_ref());
            // On equal names the family wins: that row family is skipped.
            if let Some(f) = family
                && row.is_none_or(|(r, _)| f.name <= r.name)
            {
                if !cursor.skips(&f.name) {
                    encode::encode_family(f, format, out);
                }
                cursor.family += 1;
            } else if let Some((r, rows)) = row {
                let skipped =
                    cursor.entry == 0 && (rows.skip[cursor.row_family] || cursor.skips(&r.name));
                if skipped || self.encode_rows(rows, cursor, format, out, limit) {
                    cursor.row_family += 1;
                    cursor.entry = 0;
                    cursor.header_written = false;
                    cursor.group_written = false;
                }
            } else {
                encode::encode_end(format, out);
                cursor.done = true;
                return true;
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
        while let Some(&entry) = entries.get(cursor.entry) {
            cursor.entry += 1;
            if !entry.same_as_previous() {
                cursor.group_written = false;
            }
            let value = rows.value(entry);
            if value.is_empty() || cursor.group_written {
                continue;
            }
            cursor.group_written = true;
            if !cursor.header_written {
                write_header(&family.name, &family.help, family.kind, format, out);
                cursor.header_written = true;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(suffix);
            layout.write_labels(entry, out);
            out.push(b' ');
            out.extend_from_slice(value);
            out.push(b'\n');
            if out.len() >= limit {
                return cursor.entry == entries.len();
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Labels, Sample};

    fn family(name: &'static str, value: f64) -> Family {
        Family {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed("help"),
            kind: Kind::Gauge,
            samples: vec![Sample {
                labels: Labels::none(),
                value,
            }],
        }
    }

    #[test]
    fn a_skipping_cursor_passes_over_the_names_it_was_given() {
        let exposition = Exposition::from_families(vec![
            family("xen_b", 1.0),
            family("xen_d", 2.0),
            family("xen_f", 3.0),
        ]);
        let mut cursor = Cursor::skipping([Cow::Borrowed("xen_d"), Cow::Borrowed("xen_a")]);
        let mut text = Vec::new();
        loop {
            // A line at a time.
            let mut chunk = Vec::new();
            let done = exposition.encode_some(&mut cursor, Format::Text, &mut chunk, 1);
            text.extend_from_slice(&chunk);
            if done {
                break;
            }
        }
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("xen_b 1\n") && text.contains("xen_f 3\n"),
            "{text}"
        );
        assert!(!text.contains("xen_d"), "{text}");
    }
}

//! The encoded output of one collection in one format, shared by the responses that read it at
//! the same time: each chunk is encoded (and compressed) once, by whichever response needs it
//! first, and kept only until the slowest response reading the tape has it. Forty scrapes of
//! one collection thus hold a few chunks between them, not forty copies.
//!
//! A response can join a tape only while its first chunk is still there; one that comes later
//! (a scrape answered from the last collection under `--scrape.min-interval`) starts a tape of
//! its own.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use flate2::Crc;

use crate::metrics::encode::Format;
use crate::metrics::exposition::{Cursor, Exposition};

use super::gzip::Deflate;

/// Size of the chunks a plain exposition is sent in. A few are in memory at once (the one
/// being encoded, the one waiting, the one being written), so their size is part of the peak;
/// larger chunks mean fewer hand-overs between threads, which did not pay for the memory
/// (benches/README.md).
const CHUNK: usize = 512 << 10;

/// Room beyond [`CHUNK`] for the line or family header that crosses the limit.
const CHUNK_SLACK: usize = 64 << 10;

/// Text encoded per step when compressing: small enough that one step does not hold an async
/// worker long enough to delay other connections noticeably.
const GZIP_TEXT: usize = 256 << 10;

/// Size of the compressed chunks: 64 KiB of output is about 256 KiB of text.
const GZIP_CHUNK: usize = 64 << 10;

/// What a tape encodes: the format, whether compressed, and the families the responses have
/// written before the collection (not written again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Kind {
    pub(super) format: Format,
    pub(super) gzip: bool,
    pub(super) skip: Vec<Cow<'static, str>>,
}

/// A collection and the tapes being read from it.
#[derive(Debug, Default)]
pub(super) struct Collected {
    exposition: Arc<Exposition>,
    tapes: Mutex<Vec<Weak<Tape>>>,
}

impl Collected {
    pub(super) fn new(exposition: Exposition) -> Collected {
        Collected {
            exposition: Arc::new(exposition),
            tapes: Mutex::new(Vec::new()),
        }
    }

    /// A reader of this collection encoded as `kind`: on the tape of responses reading it
    /// now if one has not dropped its first chunk yet, else on a new tape.
    pub(super) fn reader(&self, kind: Kind) -> Reader {
        let mut tapes = self.tapes.lock().unwrap_or_else(|e| e.into_inner());
        tapes.retain(|t| t.strong_count() > 0);
        for tape in tapes.iter().filter_map(Weak::upgrade) {
            if tape.kind == kind
                && let Some(reader) = Reader::join(&tape)
            {
                return reader;
            }
        }
        let tape = Arc::new(Tape::new(self.exposition.clone(), kind));
        tapes.push(Arc::downgrade(&tape));
        Reader::join(&tape).unwrap_or_else(|| unreachable!("a new tape starts at its first chunk"))
    }
}

/// One encoding of a collection, chunk by chunk.
#[derive(Debug)]
struct Tape {
    exposition: Arc<Exposition>,
    kind: Kind,
    /// The chunks not yet read by every reader, and who reads.
    chunks: Mutex<Chunks>,
    /// The encoding; held while a chunk is encoded, so that readers waiting for the same
    /// chunk wait for it without blocking a thread, and chunks come out in order.
    encoder: tokio::sync::Mutex<Encoder>,
}

#[derive(Debug, Default)]
struct Chunks {
    /// Index of the first chunk in `kept`.
    first: usize,
    kept: VecDeque<Bytes>,
    /// Index of the next chunk of every reader, by reader.
    readers: Vec<(u64, usize)>,
    next_reader: u64,
    /// The last chunk is in `kept` (or has been read by all).
    finished: bool,
    /// CRC-32 and length of the compressed text, once finished.
    crc: Option<Arc<Crc>>,
}

impl Chunks {
    /// Drops the chunks every reader has had.
    fn trim(&mut self) {
        let slowest = self.readers.iter().map(|&(_, next)| next).min();
        let slowest = slowest.unwrap_or(self.first + self.kept.len());
        while self.first < slowest && self.kept.pop_front().is_some() {
            self.first += 1;
        }
    }
}

#[derive(Debug)]
struct Encoder {
    cursor: Cursor,
    text: Vec<u8>,
    deflate: Option<Deflate>,
    done: bool,
}

impl Tape {
    fn new(exposition: Arc<Exposition>, kind: Kind) -> Tape {
        let limit = if kind.gzip { GZIP_TEXT } else { CHUNK };
        let encoder = Encoder {
            cursor: Cursor::skipping(kind.skip.iter().cloned()),
            text: Vec::with_capacity(limit + CHUNK_SLACK),
            deflate: kind.gzip.then(Deflate::new),
            done: false,
        };
        Tape {
            exposition,
            kind,
            chunks: Mutex::new(Chunks::default()),
            encoder: tokio::sync::Mutex::new(encoder),
        }
    }

    fn chunks(&self) -> std::sync::MutexGuard<'_, Chunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes the next chunk, with the CRC-32 of a compressed text when it is the last one
    /// (`Some(None)` for the last of a plain text); `None` when the encoding was complete
    /// already.
    fn encode(&self, encoder: &mut Encoder) -> Option<(Bytes, Option<Option<Crc>>)> {
        if encoder.done {
            return None;
        }
        let format = self.kind.format;
        loop {
            match &mut encoder.deflate {
                None => {
                    let done = self.exposition.encode_some(
                        &mut encoder.cursor,
                        format,
                        &mut encoder.text,
                        CHUNK,
                    );
                    encoder.done = done;
                    // No buffer for a chunk that will not come.
                    let next = if done {
                        Vec::new()
                    } else {
                        Vec::with_capacity(CHUNK + CHUNK_SLACK)
                    };
                    let chunk = std::mem::replace(&mut encoder.text, next);
                    return Some((Bytes::from(chunk), done.then_some(None)));
                }
                Some(deflate) => {
                    let done = self.exposition.encode_some(
                        &mut encoder.cursor,
                        format,
                        &mut encoder.text,
                        GZIP_TEXT,
                    );
                    deflate.write(&encoder.text);
                    encoder.text.clear();
                    if done {
                        encoder.done = true;
                        let crc = deflate.finish();
                        let chunk = Bytes::from(std::mem::take(deflate.output()));
                        return Some((chunk, Some(Some(crc))));
                    }
                    if deflate.output().len() >= GZIP_CHUNK {
                        return Some((Bytes::from(std::mem::take(deflate.output())), None));
                    }
                }
            }
        }
    }
}

/// One response's place on a tape; leaving it (dropping the reader) lets the tape drop what
/// only this response still needed.
#[derive(Debug)]
pub(super) struct Reader {
    tape: Arc<Tape>,
    id: u64,
    next: usize,
}

impl Reader {
    /// A reader at the start of `tape`, unless its first chunk is gone.
    fn join(tape: &Arc<Tape>) -> Option<Reader> {
        let mut chunks = tape.chunks();
        if chunks.first > 0 {
            return None;
        }
        let id = chunks.next_reader;
        chunks.next_reader += 1;
        chunks.readers.push((id, 0));
        Some(Reader {
            tape: tape.clone(),
            id,
            next: 0,
        })
    }

    /// The next chunk; `None` at the end.
    pub(super) async fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.take() {
            return chunk;
        }
        let tape = self.tape.clone();
        let mut encoder = tape.encoder.lock().await;
        // Another reader may have encoded it while this one waited.
        if let Some(chunk) = self.take() {
            return chunk;
        }
        let encoded = tape.encode(&mut encoder);
        let mut chunks = tape.chunks();
        match encoded {
            Some((chunk, last)) => {
                chunks.kept.push_back(chunk);
                if let Some(crc) = last {
                    chunks.finished = true;
                    chunks.crc = crc.map(Arc::new);
                }
            }
            None => chunks.finished = true,
        }
        drop(chunks);
        self.take().flatten()
    }

    /// The next chunk if it is known: `Some(None)` at the end, `None` when it is still to be
    /// encoded.
    fn take(&mut self) -> Option<Option<Bytes>> {
        let mut chunks = self.tape.chunks();
        let Some(chunk) = chunks.kept.get(self.next - chunks.first).cloned() else {
            return chunks.finished.then_some(None);
        };
        self.next += 1;
        let (id, next) = (self.id, self.next);
        if let Some(reader) = chunks.readers.iter_mut().find(|(r, _)| *r == id) {
            reader.1 = next;
        }
        chunks.trim();
        Some(Some(chunk))
    }

    /// CRC-32 and length of the text of a compressed tape, once it has been read to the end.
    pub(super) fn crc(&self) -> Option<Arc<Crc>> {
        self.tape.chunks().crc.clone()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut chunks = self.tape.chunks();
        let id = self.id;
        chunks.readers.retain(|(r, _)| *r != id);
        chunks.trim();
    }
}

//! One gzip member (RFC 1952) written in pieces: the header, raw deflate data, the CRC-32 and
//! length. Framed here rather than by flate2's `GzEncoder` because a response's deflate data
//! come from two places, each compressed once for many responses: the record families
//! ([`Deflated`](crate::metrics::exposition::Deflated), ending in a sync flush on a byte
//! boundary) and the collection (a shared tape). Concatenated they are one deflate stream, so
//! the response is still a single member, which every gzip client reads.

use std::io::Write;

use flate2::Crc;
use flate2::write::DeflateEncoder;

#[cfg(test)]
use crate::metrics::exposition::Deflated;

/// ID1 ID2, CM deflate, no flags, no modification time, XFL 4 (fastest), OS unknown.
pub(super) const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// The trailer of a member whose text has the CRC-32 and length `crc`.
pub(super) fn trailer(crc: &Crc) -> [u8; 8] {
    let mut trailer = [0; 8];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    trailer
}

/// A raw deflate stream into a buffer that the caller empties as it likes, and the CRC-32 of
/// its text.
pub(super) struct Deflate {
    deflate: DeflateEncoder<Vec<u8>>,
    crc: Crc,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("pending", &self.deflate.get_ref().len())
            .field("text", &self.crc.amount())
            .finish()
    }
}

impl Deflate {
    pub(super) fn new() -> Deflate {
        Deflate {
            deflate: DeflateEncoder::new(Vec::new(), flate2::Compression::fast()),
            crc: Crc::new(),
        }
    }

    /// Compresses `text`.
    pub(super) fn write(&mut self, text: &[u8]) {
        self.crc.update(text);
        // Writing into a Vec cannot fail.
        let _ = self.deflate.write_all(text);
    }

    /// Ends the stream (a final block); returns the CRC-32 and length of all the text.
    pub(super) fn finish(&mut self) -> Crc {
        // Writing into a Vec cannot fail.
        let _ = self.deflate.try_finish();
        std::mem::take(&mut self.crc)
    }

    /// The compressed output not yet taken.
    pub(super) fn output(&mut self) -> &mut Vec<u8> {
        self.deflate.get_mut()
    }
}

/// A whole member: the header, an optional prefix compressed beforehand, `rest` compressed.
#[cfg(test)]
pub(super) fn member(prefix: Option<&Deflated>, rest: &[u8]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    let mut crc = Crc::new();
    if let Some(prefix) = prefix {
        out.extend_from_slice(&prefix.bytes);
        crc.combine(&prefix.crc);
    }
    let mut deflate = Deflate::new();
    for piece in rest.chunks(1000) {
        deflate.write(piece);
        out.append(deflate.output());
    }
    crc.combine(&deflate.finish());
    out.append(deflate.output());
    out.extend_from_slice(&trailer(&crc));
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use std::sync::Arc;

    use crate::metrics::encode::Format;
    use crate::metrics::exposition::Rendered;
    use crate::metrics::{Family, Kind, Label, Labels, Sample};

    fn gunzip(member: &[u8]) -> Vec<u8> {
        let mut text = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(member);
        decoder.read_to_end(&mut text).unwrap();
        // One member and nothing after it.
        assert_eq!(decoder.into_inner().len(), 0);
        text
    }

    /// Families `a` (5000 samples) and `b`, rendered.
    fn rendered() -> Rendered {
        let family = |name: &'static str, n: usize| Family {
            name: name.into(),
            help: "Help.".into(),
            kind: Kind::Gauge,
            samples: (0..n)
                .map(|i| Sample {
                    labels: Labels::head(Arc::from(vec![Label::new("i", i.to_string())])),
                    value: 1.0,
                })
                .collect(),
        };
        Rendered::new(vec![family("a", 5000), family("b", 3)], Format::Text)
    }

    #[test]
    fn a_compressed_prefix_and_the_rest_make_one_member_of_both_texts() {
        let prefix = Arc::new(rendered());
        let text = prefix.text();
        assert_eq!(text.len(), prefix.text_len());
        // In pieces, several for a text this long.
        assert!(prefix.pieces().count() > 1);
        assert!(text.starts_with(b"# HELP a Help.\n# TYPE a gauge\na{i=\"0\"} 1\n"));
        assert!(text.ends_with(b"b{i=\"2\"} 1\n"));
        let rest = b"# TYPE c gauge\nc{x=\"y\"} 2\n".repeat(3000);
        let mut expected = text.clone();
        expected.extend_from_slice(&rest);
        assert_eq!(gunzip(&member(Some(&prefix.deflated), &rest)), expected);
        assert_eq!(gunzip(&member(Some(&prefix.deflated), b"")), text);
    }

    #[test]
    fn empty_parts_make_a_valid_member() {
        assert_eq!(gunzip(&member(None, b"a 1\n")), b"a 1\n");
        assert_eq!(gunzip(&member(None, b"")), b"");
        let empty = Arc::new(Rendered::new(Vec::new(), Format::Text));
        assert!(empty.text().is_empty());
        assert_eq!(gunzip(&member(Some(&empty.deflated), b"")), b"");
    }
}

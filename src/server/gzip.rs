//! One gzip member (RFC 1952) written piece by piece: header, raw deflate, CRC-32 and length.
//! Framed here rather than by flate2's `GzEncoder` so that a response can start with text
//! compressed once for many responses (the record families, see [`Deflated`]) and compress
//! only the rest; the result is still a single member, which every gzip client reads.

use std::io::Write;

use flate2::Crc;
use flate2::write::DeflateEncoder;

use crate::metrics::exposition::Deflated;

/// ID1 ID2, CM deflate, no flags, no modification time, XFL 4 (fastest), OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

/// A gzip member being written into a buffer that the caller empties as it likes.
pub(super) struct Gzip {
    deflate: DeflateEncoder<Vec<u8>>,
    /// CRC-32 and length of all the text so far, the prefix's included.
    crc: Crc,
    /// Whether `deflate` has been given text: a compressed prefix can only come before.
    started: bool,
}

impl Gzip {
    /// A member whose output buffer starts with the header and has room for `capacity`.
    pub(super) fn new(capacity: usize) -> Gzip {
        let mut out = Vec::with_capacity(capacity.max(HEADER.len()));
        out.extend_from_slice(&HEADER);
        Gzip {
            deflate: DeflateEncoder::new(out, flate2::Compression::fast()),
            crc: Crc::new(),
            started: false,
        }
    }

    /// Puts text compressed beforehand at the start of the member; false (and nothing
    /// written) once other text has been written or a prefix given.
    pub(super) fn prefix(&mut self, deflated: &Deflated) -> bool {
        if self.started {
            return false;
        }
        self.started = true;
        // The encoder has written nothing yet, so its stream will start on the byte boundary
        // where the prefix's sync flush ends.
        self.deflate.get_mut().extend_from_slice(&deflated.bytes);
        // Combined into an empty CRC: the prefix's, which the rest then continues.
        self.crc.combine(&deflated.crc);
        true
    }

    /// Compresses `text`.
    pub(super) fn write(&mut self, text: &[u8]) {
        self.started = true;
        self.crc.update(text);
        // Writing into a Vec cannot fail.
        let _ = self.deflate.write_all(text);
    }

    /// Ends the deflate stream and appends the trailer.
    pub(super) fn finish(&mut self) {
        // Writing into a Vec cannot fail.
        let _ = self.deflate.try_finish();
        let (sum, amount) = (self.crc.sum(), self.crc.amount());
        let out = self.deflate.get_mut();
        out.extend_from_slice(&sum.to_le_bytes());
        out.extend_from_slice(&amount.to_le_bytes());
    }

    /// The compressed output not yet taken.
    pub(super) fn output(&mut self) -> &mut Vec<u8> {
        self.deflate.get_mut()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::metrics::exposition::Rendered;

    fn gunzip(member: &[u8]) -> Vec<u8> {
        let mut text = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(member);
        decoder.read_to_end(&mut text).unwrap();
        // One member and nothing after it.
        assert_eq!(decoder.into_inner().len(), 0);
        text
    }

    fn rendered(text: &[u8]) -> Rendered {
        let mut rendered = Rendered::default();
        rendered.text = text.to_vec();
        rendered
    }

    #[test]
    fn a_compressed_prefix_and_the_rest_make_one_member_of_both_texts() {
        let prefix = rendered(&b"# TYPE a gauge\na 1\n".repeat(5000));
        let rest = b"# TYPE b gauge\nb{x=\"y\"} 2\n".repeat(3000);
        let mut gz = Gzip::new(0);
        assert!(gz.prefix(prefix.deflated()));
        // Written in pieces, as the encoder does, and taken out part way through.
        let mut out = Vec::new();
        for piece in rest.chunks(1000) {
            gz.write(piece);
            out.append(gz.output());
        }
        gz.finish();
        out.append(gz.output());
        let mut expected = prefix.text.clone();
        expected.extend_from_slice(&rest);
        assert_eq!(gunzip(&out), expected);
        // The prefix is compressed once and reused as it is.
        let again = prefix.deflated() as *const Deflated;
        assert!(std::ptr::eq(again, prefix.deflated()));
        let mut gz = Gzip::new(0);
        assert!(gz.prefix(prefix.deflated()));
        gz.finish();
        assert_eq!(gunzip(gz.output()), prefix.text);
    }

    #[test]
    fn a_prefix_after_text_is_refused_and_an_empty_member_is_valid() {
        let mut gz = Gzip::new(0);
        gz.write(b"a 1\n");
        assert!(!gz.prefix(rendered(b"b 2\n").deflated()));
        gz.finish();
        assert_eq!(gunzip(gz.output()), b"a 1\n");

        let mut gz = Gzip::new(0);
        gz.finish();
        assert_eq!(gunzip(gz.output()), b"");
        let mut gz = Gzip::new(0);
        assert!(gz.prefix(rendered(b"").deflated()));
        gz.finish();
        assert_eq!(gunzip(gz.output()), b"");
    }
}

//! Encodes families in the Prometheus text format 0.0.4 or OpenMetrics 1.0.0 and picks the
//! format from an `Accept` header. Infallible: it writes into a `Vec<u8>`.
//! (Interface stub; the implementation lands with the encoder work.)

use super::Family;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Picks the format for an `Accept` header.
pub fn negotiate(accept: Option<&str>) -> Format {
    let _ = accept;
    unimplemented!("encoder stub")
}

/// Appends one family.
pub fn encode_family(family: &Family, format: Format, out: &mut Vec<u8>) {
    let _ = (family, format, out);
    unimplemented!("encoder stub")
}

/// Appends what ends an exposition (`# EOF` in OpenMetrics, nothing in text).
pub fn encode_end(format: Format, out: &mut Vec<u8>) {
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// Encodes a whole exposition.
pub fn encode(families: &[Family], format: Format, out: &mut Vec<u8>) {
    for family in families {
        encode_family(family, format, out);
    }
    encode_end(format, out);
}

//! Parses `/rrd_updates` bodies: the three JSON generations (legacy JSON5 with bare NaN, `data`
//! nested in `meta`, current) and the XML `xport`. Pure: no I/O, no knowledge of Prometheus.
//! (Interface stub; the implementation lands with the parser work.)

use std::borrow::Cow;

/// A parsed `/rrd_updates` reply, reduced to what an exporter needs: the legend and the newest
/// row.
#[derive(Debug, Clone, PartialEq)]
pub struct RrdUpdates<'a> {
    /// `meta.step` in seconds, if present and numeric.
    pub step: Option<i64>,
    /// `meta.end` (host clock, epoch seconds), if present and numeric.
    pub end: Option<i64>,
    /// Legend entries in column order, e.g. `AVERAGE:vm:<uuid>:cpu0`.
    pub legend: Vec<Cow<'a, str>>,
    /// The row with the largest `t`, or `None` when the reply has no rows.
    pub newest: Option<Row>,
}

/// One data row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Epoch seconds (host clock).
    pub t: i64,
    /// One value per legend entry; NaN where the RRD has no value.
    pub values: Vec<f64>,
}

/// A legend entry split into its four fields: `<cf>:<owner>:<uuid>:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legend<'a> {
    /// Consolidation function: `AVERAGE`, `MIN`, `MAX`.
    pub cf: &'a str,
    /// `host`, `vm` or `sr`.
    pub owner: &'a str,
    /// The owner's UUID.
    pub uuid: &'a str,
    /// The data source name; may contain `-`, `/` and upper case, and is split off after the
    /// third colon only.
    pub name: &'a str,
}

impl<'a> Legend<'a> {
    /// Splits an entry on its first three colons; `None` when it has fewer.
    pub fn parse(entry: &'a str) -> Option<Legend<'a>> {
        let mut parts = entry.splitn(4, ':');
        Some(Legend {
            cf: parts.next()?,
            owner: parts.next()?,
            uuid: parts.next()?,
            name: parts.next()?,
        })
    }
}

/// Why a body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed rrd_updates body at byte {offset}: {what}")]
pub struct ParseError {
    /// Byte offset where parsing stopped.
    pub offset: usize,
    /// What was expected or found.
    pub what: &'static str,
}

/// Parses a body in any supported generation.
pub fn parse(body: &[u8]) -> Result<RrdUpdates<'_>, ParseError> {
    let _ = body;
    unimplemented!("parser stub")
}

//! Fuzz target: `xapi::rrd::parse` on arbitrary bytes must not panic, and whatever it accepts
//! must have one value per legend entry in the newest row.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_exporter::xapi::rrd::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(updates) = parse(data)
        && let Some(row) = &updates.newest
    {
        assert_eq!(row.values.len(), updates.legend.len());
    }
});

//! Fuzz target: `Legend::parse` on arbitrary UTF-8 must not panic, and the four fields it
//! returns must reassemble into the input (nothing lost or invented by the split).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_exporter::xapi::rrd::Legend;

fuzz_target!(|entry: &str| {
    if let Some(l) = Legend::parse(entry) {
        assert_eq!(format!("{}:{}:{}:{}", l.cf, l.owner, l.uuid, l.name), entry);
        assert!(!l.cf.contains(':') && !l.owner.contains(':') && !l.uuid.contains(':'));
    }
});

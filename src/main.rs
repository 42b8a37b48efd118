//! The `xen-exporter` binary (stub).
fn main() {}

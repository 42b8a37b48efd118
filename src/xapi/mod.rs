//! Talks to one XAPI pool. Knows nothing about Prometheus.

pub mod rrd;

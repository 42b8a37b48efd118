//! A simulated XAPI pool (stub).

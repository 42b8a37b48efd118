//! Loopback tests of event.from, event.inject, the event-stream faults and the runtime
//! mutators.

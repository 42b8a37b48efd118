//! Loopback tests of the simulator.

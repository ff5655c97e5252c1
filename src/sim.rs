//! Simulated Bitcoin network (in progress).

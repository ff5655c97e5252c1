//! The generator of realistic peer databases lives in the test kit (`dnsseeder::testkit::generate`);
//! the benches keep using it as `common::fill`, `common::Rng`, `common::NOW`, ...
//!
//! The bench harness lives beside this file, one role a file, and each bench includes only
//! the files it uses (`#[path = "common/flags.rs"] mod flags;`): `flags.rs` (the flag
//! parser), `run.rs` (`main`'s exit codes), `threads.rs` and `process.rs` (CPU time and
//! descriptors from `/proc/self`), `memory.rs` (another process's RSS), `load.rs` (the
//! load average), `child.rs` (a child process killed on drop), `explain.rs` (query plans
//! checked against their indexes), `workload.rs` (a crawler writer's workload) and
//! `churn.rs` (a real crawler running flat out on refused loopback addresses).

#[allow(unused_imports)] // each bench uses a different part of it
pub use dnsseeder::testkit::generate::*;

//! The generator of realistic peer databases now lives in the library
//! (`dnsseeder::generate`, also behind the hidden `dnsseeder generate` subcommand); the
//! benches keep using it as `common::fill`, `common::Rng`, `common::NOW`, ...

#[allow(unused_imports)] // each bench uses a different part of it
pub use dnsseeder::testkit::generate::*;

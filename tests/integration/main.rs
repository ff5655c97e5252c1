//! Integration tests: the real `dnsseeder` binary on real files and sockets.
//! One test binary with modules, so the crate is linked once.

#![allow(clippy::unwrap_used)]

mod asn;
mod axfr;
mod backup;
mod cli;
mod contrib;
mod crawl;
mod dnsd;
mod evidence;
mod faults;
mod hostile;
mod metrics;
mod networks;
mod prometheus;
mod proxy;
mod secondaries;
mod seed_dns;
mod util;
mod v2;

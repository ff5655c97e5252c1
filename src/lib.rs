//! dnsseeder: a Bitcoin DNS seeder whose memory lives in SQLite.

pub mod dns;
pub mod sim;

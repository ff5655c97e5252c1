//! The zone as an RFC 1035 master file (`dnsseeder zone`), for DNS servers that load
//! their zones from files: the same SOA, NS and address records an AXFR carries.

use std::fmt::Write;

use super::records::Zone;
use crate::dns::zone::ZoneContext;

/// The master file of `zone`: `$ORIGIN` and `$TTL`, then SOA, NS and the address records
/// of each name, one per line.
pub fn master_file(ctx: &ZoneContext, zone: &Zone) -> String {
    let text = &ctx.text;
    let [refresh, retry, expire, minimum] = text.timers;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "; the seed zone of dnsseeder, serial {}", zone.serial);
    let _ = writeln!(out, "$ORIGIN {}.", text.host);
    let _ = writeln!(out, "$TTL {}", ctx.ttl);
    let _ = writeln!(
        out,
        "@ IN SOA {}. {}. {} {refresh} {retry} {expire} {minimum}",
        text.ns[0], text.mbox, zone.serial
    );
    for ns in &text.ns {
        let _ = writeln!(out, "@ IN NS {ns}.");
    }
    for name in &zone.names {
        let owner = name.name.label.as_deref().unwrap_or("@");
        for a in &name.v4 {
            let _ = writeln!(out, "{owner} IN A {a}");
        }
        for a in &name.v6 {
            let _ = writeln!(out, "{owner} IN AAAA {a}");
        }
    }
    out
}

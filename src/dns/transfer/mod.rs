//! Zone transfer (SPEC §13): the seeder as a hidden primary for authoritative
//! secondaries (NSD, Knot, BIND), which pull the zone by AXFR, refresh it on NOTIFY, and
//! may sign it with DNSSEC.
//!
//! - `records`: the zone's names and their address records, chosen as answers are, and
//!   the serial rule (pure);
//! - `axfr`: a transfer request in, the framed messages of the zone out (pure);
//! - `master_file`: the same zone as an RFC 1035 master file, for `dnsseeder zone`;
//! - `notify`: NOTIFY messages and their acknowledgements (pure); `notifier`: the thread
//!   that sends them, with retries;
//! - `keeper`: rebuilds the zone every `--zone-refresh` and raises the serial when its
//!   records changed.
//!
//! The live server keeps answering as before, a fresh draw of peers per query; the
//! transferred zone holds one draw per serial (docs/OPERATIONS.md weighs the two).

mod axfr;
mod keeper;
mod master_file;
mod notifier;
mod notify;
mod records;

pub use axfr::{MESSAGE_LIMIT, respond_transfer};
pub(super) use keeper::{PublishedZone, ZoneKeeper};
pub use master_file::master_file;
pub(super) use notifier::notify_loop;
pub use records::{NameRecords, Zone, ZoneName};

use super::zone::ZoneContext;

/// The `x<hex>` names of the zone without `--allow-filters`: sipa's four (NETWORK with
/// or without BLOOM and WITNESS), NETWORK|WITNESS with COMPACT_FILTERS, with
/// NETWORK_LIMITED, with P2P_V2, and with both.
pub const DEFAULT_ZONE_FILTERS: [u64; 8] = [0x1, 0x5, 0x9, 0xd, 0x49, 0x409, 0x809, 0xc09];

/// The names of the zone: the apex for the default mask, then `x<hex>` for each mask of
/// `--allow-filters`, or of [`DEFAULT_ZONE_FILTERS`].
pub fn zone_names(ctx: &ZoneContext) -> Vec<ZoneName> {
    let filters = ctx.allow_filters().unwrap_or(&DEFAULT_ZONE_FILTERS);
    let apex = ZoneName {
        mask: ctx.default_mask(),
        label: None,
    };
    let labelled = filters.iter().map(|&mask| ZoneName {
        mask,
        label: Some(format!("x{mask:x}")),
    });
    std::iter::once(apex).chain(labelled).collect()
}

#[cfg(test)]
mod tests;

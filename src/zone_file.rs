//! `dnsseeder zone`: the seed zone as an RFC 1035 master file, built from the database as
//! the running server builds the zone it transfers (SPEC §13), for DNS servers that load
//! their zones from files.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::asmap::Asmap;
use crate::cli::{UsageError, ZoneArgs};
use crate::dns::{AnswerSet, DnsConfig, PeerSource, Zone, ZoneContext, master_file, zone_names};
use crate::seeder::StoreSource;
use crate::store::Store;

/// Prints the zone of `args` to `out`.
///
/// # Errors
/// [`UsageError`] for unusable names or counts; otherwise when the database or the asmap
/// cannot be read, or the output written.
pub fn zone(args: &ZoneArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let config = config(args)?;
    let ctx = ZoneContext::new(&config).map_err(|e| UsageError(e.to_string()))?;
    let asmap = args.asmap.as_deref().map(Asmap::from_file).transpose()?;
    let mut source = StoreSource::new(Store::open_existing(&args.db.db)?);
    let names = zone_names(&ctx);
    let mut sets = Vec::with_capacity(names.len());
    for name in &names {
        let peers = source
            .good_peers(name.mask)
            .with_context(|| format!("reading the good peers of mask {:#x}", name.mask))?;
        sets.push((
            name.mask,
            Arc::new(AnswerSet::grouped(peers, asmap.as_ref())),
        ));
    }
    let lookup = |mask| {
        sets.iter()
            .find(|(m, _)| *m == mask)
            .map(|(_, s)| Arc::clone(s))
    };
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let zone = Zone::choose(ctx.serial(), &names, lookup, config.zone_records, &mut rng);
    out.write_all(master_file(&ctx, &zone).as_bytes())?;
    Ok(())
}

/// The DNS settings `zone` shares with `run`, checked.
fn config(args: &ZoneArgs) -> Result<DnsConfig, UsageError> {
    let (ns, extra_ns) = args
        .ns
        .split_first()
        .ok_or_else(|| UsageError("--ns: give at least one name server".into()))?;
    let mut config = DnsConfig::new(args.host.clone(), ns.clone(), args.mbox.clone());
    config.extra_ns = extra_ns.to_vec();
    config.default_mask = args.filter_service;
    config.allow_filters = args.allow_filters.clone();
    config.ttl = args.ttl;
    config.serial = args.serial;
    config.zone_records = args.records.zone_records;
    config.validate().map_err(|e| UsageError(e.to_string()))?;
    Ok(config)
}

//! Service flags as operators write them: `NETWORK,WITNESS`, `0x409` or `1033`.
//!
//! The seeder filters by service bits everywhere (the bare host, `x<hex>` subdomains,
//! `peers --filter-service`), so the flag syntax is parsed in one place.

/// Known service bits by name, as Bitcoin Core names them (without `NODE_`).
pub const NAMES: [(&str, u64); 7] = [
    ("NETWORK", 1 << 0),
    ("GETUTXO", 1 << 1),
    ("BLOOM", 1 << 2),
    ("WITNESS", 1 << 3),
    ("COMPACT_FILTERS", 1 << 6),
    ("NETWORK_LIMITED", 1 << 10),
    ("P2P_V2", 1 << 11),
];

/// Parses a service mask: comma-separated names (case-insensitive), `0x` hex or decimal.
///
/// # Errors
/// Returns a one-line message listing the known names when a part is not understood.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map_err(|_| format!("invalid hex service mask '{text}'"));
    }
    if let Ok(value) = text.parse::<u64>() {
        return Ok(value);
    }
    let mut mask = 0;
    for part in text.split(',').map(str::trim) {
        let bare = part.strip_prefix("NODE_").unwrap_or(part);
        let bit = NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(bare))
            .map(|(_, bit)| *bit)
            .ok_or_else(|| {
                let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown service flag '{part}' (known: {}; or a 0x-hex or decimal mask)",
                    known.join(", ")
                )
            })?;
        mask |= bit;
    }
    Ok(mask)
}

/// Names the bits of `mask`, e.g. `NETWORK|WITNESS`; unknown bits as hex.
pub fn describe(mask: u64) -> String {
    let mut parts: Vec<String> = NAMES
        .iter()
        .filter(|(_, bit)| mask & bit != 0)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let unknown = NAMES.iter().fold(mask, |m, (_, bit)| m & !bit);
    if unknown != 0 {
        parts.push(format!("0x{unknown:x}"));
    }
    if parts.is_empty() {
        "NONE".to_owned()
    } else {
        parts.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hex_and_decimal() {
        assert_eq!(parse("NETWORK"), Ok(1));
        assert_eq!(parse("network,witness"), Ok(9));
        assert_eq!(parse("NODE_NETWORK, NODE_WITNESS"), Ok(9));
        assert_eq!(parse("WITNESS,NETWORK_LIMITED,NETWORK"), Ok(0x409));
        assert_eq!(parse("P2P_V2"), Ok(0x800));
        assert_eq!(parse("compact_filters"), Ok(0x40));
        assert_eq!(parse("0x409"), Ok(0x409));
        assert_eq!(parse("1033"), Ok(0x409));
        assert_eq!(parse("0"), Ok(0));
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = parse("NETWORK,SEGWIT").unwrap_err();
        assert!(err.contains("'SEGWIT'"), "{err}");
        assert!(err.contains("NETWORK, GETUTXO, BLOOM, WITNESS"), "{err}");
        assert!(parse("0xzz").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn describe_names_bits() {
        assert_eq!(describe(0x409), "NETWORK|WITNESS|NETWORK_LIMITED");
        assert_eq!(describe(0), "NONE");
        assert_eq!(describe(1 << 24 | 1), "NETWORK|0x1000000");
    }
}

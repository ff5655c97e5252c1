//! The contents of a v2 packet (BIP324, "v2 P2P message"): a message type, then the payload
//! as v1 would carry it. The type is one byte, a short ID from BIP324's table, or 0 and the
//! 12-byte NUL-padded command of v1 for messages without one (`version`, `verack`,
//! `getaddr`, `sendaddrv2`...). Pure functions, apart from the socket, so that the table
//! and the checks on a peer's bytes are tested on their own.

use bitcoin::consensus::encode;
use bitcoin::p2p::message::NetworkMessage;

use super::super::ProbeError;
use super::super::decode::command_name;

/// BIP324's short message IDs, from 1 (Bitcoin Core's `V2_MESSAGE_IDS` in src/net.cpp).
/// IDs 29 to 255 name nothing yet.
const SHORT_IDS: [&str; 28] = [
    "addr",
    "block",
    "blocktxn",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getblocks",
    "getblocktxn",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "sendcmpct",
    "tx",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "addrv2",
];

/// Length of a long message type: the 0 byte and the 12-byte command.
pub(crate) const LONG_TYPE_LEN: usize = 13;

/// The short ID of `command`, if it has one.
pub(crate) fn short_id(command: &str) -> Option<u8> {
    let index = SHORT_IDS.iter().position(|&name| name == command)?;
    u8::try_from(index + 1).ok()
}

/// The command a short ID stands for (`None` for 0 and for IDs BIP324 leaves unassigned).
pub(crate) fn command_of(id: u8) -> Option<&'static str> {
    SHORT_IDS.get(usize::from(id).checked_sub(1)?).copied()
}

/// The contents of a packet carrying `msg`.
pub(crate) fn encode(msg: &NetworkMessage) -> Vec<u8> {
    let command = msg.cmd();
    let mut out = match short_id(command) {
        Some(id) => vec![id],
        None => {
            let mut long = vec![0u8; LONG_TYPE_LEN];
            long[1..1 + command.len()].copy_from_slice(command.as_bytes());
            long
        }
    };
    out.extend(encode::serialize(msg));
    out
}

/// Splits a packet's contents into the command and the payload. A short ID BIP324 leaves
/// unassigned is named `short id N` (no command has a space): ignored, as Core ignores it.
///
/// # Errors
/// `Protocol` for empty contents or a malformed long type.
pub(crate) fn decode(contents: &[u8]) -> Result<(String, &[u8]), ProbeError> {
    let Some((&first, rest)) = contents.split_first() else {
        return Err(ProbeError::Protocol("empty v2 message".into()));
    };
    if first != 0 {
        let command = command_of(first).map_or_else(|| format!("short id {first}"), str::to_owned);
        return Ok((command, rest));
    }
    let Some((raw, payload)) = rest.split_first_chunk::<12>() else {
        return Err(ProbeError::Protocol("v2 message type cut short".into()));
    };
    Ok((command_name(raw)?, payload))
}

#[cfg(test)]
mod tests {
    use bitcoin::p2p::message_network::VersionMessage;

    use super::*;

    #[test]
    fn the_table_is_bip324s() {
        // BIP324's table, by ID.
        for (id, name) in [
            (1, "addr"),
            (5, "feefilter"),
            (13, "headers"),
            (14, "inv"),
            (18, "ping"),
            (19, "pong"),
            (20, "sendcmpct"),
            (21, "tx"),
            (27, "cfcheckpt"),
            (28, "addrv2"),
        ] {
            assert_eq!(short_id(name), Some(id), "{name}");
            assert_eq!(command_of(id), Some(name), "{id}");
        }
        for name in ["version", "verack", "getaddr", "sendaddrv2", "wtxidrelay"] {
            assert_eq!(short_id(name), None, "{name}");
        }
        assert_eq!(command_of(0), None);
        assert_eq!(command_of(29), None);
        assert_eq!(command_of(255), None);
    }

    #[test]
    fn short_and_long_types_round_trip() {
        let ping = encode(&NetworkMessage::Ping(7));
        assert_eq!(ping[0], 18);
        assert_eq!(
            decode(&ping).unwrap(),
            ("ping".to_owned(), &7u64.to_le_bytes()[..])
        );
        let getaddr = encode(&NetworkMessage::GetAddr);
        assert_eq!(getaddr, b"\0getaddr\0\0\0\0\0");
        assert_eq!(decode(&getaddr).unwrap(), ("getaddr".to_owned(), &[][..]));
        let version = VersionMessage::new(
            bitcoin::p2p::ServiceFlags::NONE,
            0,
            bitcoin::p2p::address::Address::new(
                &"1.2.3.4:8333".parse().unwrap(),
                bitcoin::p2p::ServiceFlags::NONE,
            ),
            bitcoin::p2p::address::Address::new(
                &"1.2.3.4:8333".parse().unwrap(),
                bitcoin::p2p::ServiceFlags::NONE,
            ),
            1,
            "/x/".into(),
            0,
        );
        let bytes = encode(&NetworkMessage::Version(version.clone()));
        let (command, payload) = decode(&bytes).unwrap();
        assert_eq!(command, "version");
        assert_eq!(payload, encode::serialize(&version));
    }

    #[test]
    fn malformed_types_are_refused_and_unknown_ids_named() {
        for bad in [
            &b""[..],
            b"\0ping",
            b"\0pi ng\0\0\0\0\0\0\0",
            b"\0ping\0x\0\0\0\0\0\0",
        ] {
            assert_eq!(decode(bad).unwrap_err().reason(), "protocol", "{bad:?}");
        }
        assert_eq!(
            decode(&[29, 1]).unwrap(),
            ("short id 29".to_owned(), &[1][..])
        );
        // A long type for a message that has a short ID is accepted, as Core does.
        let long_ping = b"\0ping\0\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0";
        assert_eq!(decode(long_ping).unwrap().0, "ping");
    }
}

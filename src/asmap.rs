//! Bitcoin Core's asmap file (`--asmap`, SPEC §11): a bit-packed program that walks an
//! address's 128 bits (IPv4 as `::ffff:a.b.c.d`) down a trie of prefixes to the number of
//! the autonomous system that announces it. The file is checked whole when it is loaded,
//! by the rules of Core's `SanityCheckASMap` (every instruction decodes, jumps land inside
//! the program and on instruction boundaries, no path reads more than 128 bits or runs off
//! the end without returning, at most 7 zero bits of padding), so a malformed file is
//! refused at start and a lookup of a loaded one cannot fail. Decoding and checking are the
//! `asmap` crate's (a port of Core's `Interpret` and `SanityCheckASMap`, no allocation
//! per lookup); this module reads the file, bounds its size and names what to do when it
//! is refused.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Far more than any asmap (Core's are a few MiB), and below the 512 MiB at which the
/// program's bit offsets would no longer fit the 32 bits Core (and the decoder) use.
pub const MAX_ASMAP_BYTES: usize = 64 << 20;

/// Where a refused file's operator finds a fresh one.
const FIX: &str = "get a fresh one (docs/OPERATIONS.md, \"ASN diversity\")";

/// Why an asmap was refused. `what` names the file (`the asmap file PATH`) or, for bytes
/// given in memory, `the asmap data`.
#[derive(Debug, thiserror::Error)]
pub enum AsmapError {
    #[error("cannot read the asmap file {}: {source}: check the --asmap path and its permissions", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is empty: {FIX}")]
    Empty { what: String },
    #[error(
        "{what} is over {} MiB, more than any asmap: check that --asmap names an asmap file (Bitcoin Core's -asmap format)",
        MAX_ASMAP_BYTES >> 20
    )]
    TooLarge { what: String },
    #[error(
        "{what} fails Bitcoin Core's asmap sanity check (truncated, corrupt, or not an asmap file): {FIX}"
    )]
    Invalid { what: String },
}

/// A checked asmap program. Cloning shares it, and its memo.
#[derive(Clone)]
pub struct Asmap {
    map: Arc<asmap::Asmap>,
    len: usize,
    /// ASNs already looked up by [`Asmap::lookup_many`]: a lookup walks the program (about
    /// a microsecond), and the DNS cache asks for the same good peers at every rebuild.
    memo: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// Addresses the memo holds at most; past it, it starts again (far above the good peers of
/// any network).
const MEMO_MAX: usize = 1 << 20;

/// Two handles are equal when they share one loaded map (a configuration compares them).
impl PartialEq for Asmap {
    fn eq(&self, other: &Asmap) -> bool {
        Arc::ptr_eq(&self.map, &other.map)
    }
}

impl Eq for Asmap {}

impl fmt::Debug for Asmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asmap({} bytes)", self.len)
    }
}

impl Asmap {
    /// Checks `bytes` as an asmap program.
    ///
    /// # Errors
    /// [`AsmapError::Empty`], [`AsmapError::TooLarge`], or [`AsmapError::Invalid`] when
    /// Core's sanity check fails.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Asmap, AsmapError> {
        Self::check(bytes, || "the asmap data".to_owned())
    }

    /// Reads and checks the asmap file at `path`.
    ///
    /// # Errors
    /// [`AsmapError::Io`] when the file cannot be read, otherwise as
    /// [`Asmap::from_bytes`], naming the path.
    pub fn from_file(path: &Path) -> Result<Asmap, AsmapError> {
        let io = |source| AsmapError::Io {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_ASMAP_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        Self::check(bytes, || format!("the asmap file {}", path.display()))
    }

    /// The autonomous system announcing `ip` (IPv4 looked up as `::ffff:a.b.c.d`, IPv6
    /// as its 128 bits), or 0 when the map has none for it, as in Core.
    pub fn lookup(&self, ip: IpAddr) -> u32 {
        self.map.lookup(ip)
    }

    /// [`Asmap::lookup`] of each of `ips`, remembered for the next call (the DNS cache's
    /// rebuilds look up the same good peers again and again).
    pub fn lookup_many(&self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<u32> {
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if memo.len() > MEMO_MAX {
            memo.clear();
        }
        let lookup = |ip| *memo.entry(ip).or_insert_with(|| self.map.lookup(ip));
        ips.into_iter().map(lookup).collect()
    }

    fn check(bytes: Vec<u8>, what: impl Fn() -> String) -> Result<Asmap, AsmapError> {
        let len = bytes.len();
        if len == 0 {
            return Err(AsmapError::Empty { what: what() });
        }
        if len > MAX_ASMAP_BYTES {
            return Err(AsmapError::TooLarge { what: what() });
        }
        let map =
            asmap::Asmap::from_bytes(bytes).map_err(|_| AsmapError::Invalid { what: what() })?;
        Ok(Asmap {
            map: Arc::new(map),
            len,
            memo: Arc::default(),
        })
    }
}

#[cfg(test)]
mod tests;

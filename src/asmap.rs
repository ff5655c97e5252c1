//! Placeholder until the decoder lands (branch `asmap`).
use std::net::IpAddr;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asmap;

#[derive(Debug, thiserror::Error)]
pub enum AsmapError {
    #[error("placeholder")]
    Placeholder,
}

impl Asmap {
    pub fn from_bytes(_bytes: Vec<u8>) -> Result<Asmap, AsmapError> {
        Err(AsmapError::Placeholder)
    }
    pub fn from_file(_path: &Path) -> Result<Asmap, AsmapError> {
        Err(AsmapError::Placeholder)
    }
    pub fn lookup(&self, _ip: IpAddr) -> u32 {
        0
    }
}

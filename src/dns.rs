//! DNS server (in progress).

//! The `/metrics` page: a fresh registry per scrape, its values set from the counters
//! and the peer snapshot, encoded in the text format. Names and labels are SPEC §12's.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use super::Sources;
use super::process::{self, ProcessStats};
use crate::addr;
use crate::crawler::{CrawlCounters, HistogramSnapshot};
use crate::dns::DnsStats;
use crate::store::{Status, Summary};

type Labels = Vec<(&'static str, String)>;

const STATUSES: [Status; 5] = [
    Status::New,
    Status::Good,
    Status::Reachable,
    Status::Unreachable,
    Status::Banned,
];

/// The page for the current values of `sources`.
///
/// # Errors
/// Only if formatting fails (it writes to a `String`).
pub fn render(sources: &Sources) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    peers(&mut r, sources.peers.get().as_ref());
    crawl(&mut r, &sources.crawl);
    let (stats, sizes) = sources.dns.as_ref().map_or_else(Default::default, |d| {
        (d.counters.snapshot(), d.answers.get())
    });
    dns(&mut r, &stats, &sizes);
    processes(&mut r, &process::read());
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(to_prometheus_text(&out))
}

/// prometheus-client writes OpenMetrics, where a counter's family `x` has samples
/// `x_total`; the Prometheus text format (what `text/plain; version=0.0.4` promises, and
/// what `promtool check metrics` reads) names the family `x_total` too and has no `# EOF`.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = (open_metrics.lines())
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 16 * counters.len());
    for line in open_metrics.lines().filter(|l| *l != "# EOF") {
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(meta.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Registers a gauge with one series per `(labels, value)`.
fn gauges(r: &mut Registry, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, i64)>) {
    let family = Family::<Labels, Gauge>::default();
    for (labels, value) in rows {
        family.get_or_create(&labels).set(value);
    }
    r.register(name, help, family);
}

/// Registers a counter (`name` without `_total`) with one series per `(labels, value)`.
fn counters(
    r: &mut Registry,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, value) in rows {
        family.get_or_create(&labels).inc_by(value);
    }
    r.register(name, help, family);
}

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// `dnsseeder_peers{status,network}`: every status and network, 0 when absent.
fn peers(r: &mut Registry, summary: Option<&Summary>) {
    let count = |family: addr::Family, status: Status| {
        let rows = summary.map_or(&[][..], |s| &s.by_status[..]);
        let n = rows
            .iter()
            .find(|(f, s, _)| *f == family && s == status.name());
        n.map_or(0, |(.., n)| *n)
    };
    let rows = addr::Family::ALL.iter().flat_map(|&family| {
        STATUSES.iter().map(move |&status| {
            let labels = vec![
                ("status", status.name().into()),
                ("network", family.name().into()),
            ];
            (
                labels,
                i64::try_from(count(family, status)).unwrap_or(i64::MAX),
            )
        })
    });
    gauges(
        r,
        "dnsseeder_peers",
        "Peers in the database by status and network",
        rows,
    );
}

/// The probes, the learned addresses and the commit durations.
fn crawl(r: &mut Registry, c: &CrawlCounters) {
    let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
    let ok = std::iter::once(("ok", load(&c.successes)));
    let rows = ok
        .chain(c.failures.snapshot())
        .map(|(reason, n)| (label("result", reason), n));
    counters(
        r,
        "dnsseeder_probes",
        "Probes finished, by result: ok or the failure reason",
        rows,
    );
    let in_flight = i64::try_from(c.in_flight.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    r.register(
        "dnsseeder_probes_in_flight",
        "Probes running now",
        ConstGauge::new(in_flight),
    );
    r.register(
        "dnsseeder_learned_addresses",
        "Learned addresses (gossip and seeds) written to the database",
        ConstCounter::new(load(&c.learned_written)),
    );
    r.register(
        "dnsseeder_db_commit_seconds",
        "Time taken by the writer's transactions",
        CommitSeconds(c.commit_seconds.snapshot()),
    );
}

/// The DNS server's counters and answer sets.
fn dns(r: &mut Registry, s: &DnsStats, sizes: &[(u64, usize, usize)]) {
    let transports = [("udp", s.udp_queries), ("tcp", s.tcp_queries)];
    let rows = transports.map(|(t, n)| (label("transport", t), n));
    counters(
        r,
        "dnsseeder_dns_queries",
        "DNS requests received, by transport",
        rows,
    );
    let rcodes = [
        ("noerror", s.answered),
        ("nxdomain", s.nxdomain),
        ("refused", s.refused),
        ("formerr", s.formerr),
        ("notimp", s.notimp),
    ];
    let rows = rcodes.map(|(rcode, n)| (label("rcode", rcode), n));
    counters(
        r,
        "dnsseeder_dns_responses",
        "DNS responses sent, by RCODE",
        rows,
    );
    r.register(
        "dnsseeder_dns_rate_limited",
        "Empty truncated replies sent to rate-limited sources",
        ConstCounter::new(s.rate_limited),
    );
    r.register(
        "dnsseeder_dns_zone_transfers",
        "Zone transfers (AXFR, or IXFR answered with the whole zone) sent to --axfr-allow sources",
        ConstCounter::new(s.transfers),
    );
    answer_sets(r, sizes);
}

/// `dnsseeder_answer_set_size{mask,family}`: the cached answer sets (none without DNS).
fn answer_sets(r: &mut Registry, sizes: &[(u64, usize, usize)]) {
    let rows = sizes.iter().flat_map(|&(mask, v4, v6)| {
        let labels =
            move |family: &str| vec![("mask", format!("{mask:x}")), ("family", family.into())];
        [(labels("ipv4"), v4 as i64), (labels("ipv6"), v6 as i64)]
    });
    gauges(
        r,
        "dnsseeder_answer_set_size",
        "Addresses in the cached answer set, by service mask (hex) and family",
        rows,
    );
}

/// The standard `process_*` metrics that could be read.
fn processes(r: &mut Registry, p: &ProcessStats) {
    if let Some(v) = p.resident_bytes {
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(v),
        );
    }
    if let Some(v) = p.cpu_seconds {
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(v),
        );
    }
    if let Some(v) = p.open_fds {
        let v = i64::try_from(v).unwrap_or(i64::MAX);
        r.register(
            "process_open_fds",
            "Number of open file descriptors",
            ConstGauge::new(v),
        );
    }
    if let Some(v) = p.start_time {
        r.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            ConstGauge::new(v),
        );
    }
}

/// The writer's commit-duration histogram as it stands.
#[derive(Debug)]
struct CommitSeconds(HistogramSnapshot);

impl prometheus_client::encoding::EncodeMetric for CommitSeconds {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        let (sum, count, buckets) = &self.0;
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            *sum, *count, buckets, None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::metrics::PeerSnapshot;

    fn sources() -> Sources {
        let crawl = Arc::new(CrawlCounters::default());
        crawl.successes.store(7, Ordering::Relaxed);
        crawl.failures.add("timeout");
        crawl.learned_written.store(42, Ordering::Relaxed);
        crawl.commit_seconds.observe(3_000);
        let peers = PeerSnapshot::default();
        let summary = Summary {
            by_status: vec![(addr::Family::Ipv4, "good".into(), 5)],
            ..Summary::default()
        };
        peers.set(summary);
        Sources {
            crawl,
            dns: None,
            peers,
            probe_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn the_page_has_every_name_and_the_counters_values() {
        let page = render(&sources()).unwrap();
        for line in [
            "dnsseeder_peers{status=\"good\",network=\"ipv4\"} 5",
            "dnsseeder_peers{status=\"banned\",network=\"cjdns\"} 0",
            "dnsseeder_probes_total{result=\"ok\"} 7",
            "dnsseeder_probes_total{result=\"timeout\"} 1",
            "dnsseeder_probes_in_flight 0",
            "dnsseeder_learned_addresses_total 42",
            "dnsseeder_dns_queries_total{transport=\"udp\"} 0",
            "dnsseeder_dns_responses_total{rcode=\"refused\"} 0",
            "dnsseeder_dns_rate_limited_total 0",
            "dnsseeder_dns_zone_transfers_total 0",
            "dnsseeder_db_commit_seconds_count 1",
            "dnsseeder_db_commit_seconds_bucket{le=\"0.005\"} 1",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(page.contains(line), "{line} missing from\n{page}");
        }
    }

    #[test]
    fn counters_are_named_with_total_in_help_and_type() {
        let page = render(&sources()).unwrap();
        assert!(page.contains("# TYPE dnsseeder_probes_total counter\n"));
        assert!(page.contains("# HELP dnsseeder_probes_total Probes finished"));
        assert!(page.contains("# TYPE dnsseeder_peers gauge\n"));
        assert!(!page.contains("# EOF"));
    }

    #[test]
    fn a_counter_follows_its_atomic() {
        let s = sources();
        s.crawl.successes.fetch_add(3, Ordering::Relaxed);
        let page = render(&s).unwrap();
        assert!(page.contains("dnsseeder_probes_total{result=\"ok\"} 10\n"));
    }
}

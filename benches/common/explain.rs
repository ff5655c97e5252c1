//! `EXPLAIN QUERY PLAN` of the queries that must stay on their partial indexes: the DNS
//! cache's rebuild (`GOOD_SQL` on `peers_good`) and the scheduler's selection (each of
//! `DUE_SQL` on its own index). The store and scale benches print the plans next to their
//! timings and fail when a plan no longer names its index: a full scan of a million rows
//! would make their figures meaningless.

use dnsseeder::addr::{Family, FamilySet};
use dnsseeder::store::{DUE_SQL, GOOD_SQL, HIDDEN_DUE_SQL};
use rusqlite::{Connection, ToSql};

/// Prints and checks the plans of the DNS cache's query (IPv4 peers with the service
/// bits `mask`) and of the scheduler's queries (due at `now`, 1000 at most).
///
/// # Errors
/// On SQLite errors, or when a plan does not use its index: look for a change to the
/// query or to the indexes in `src/store.rs`.
pub fn explain_queries(conn: &Connection, mask: i64, now: i64) -> anyhow::Result<()> {
    explain(
        conn,
        GOOD_SQL,
        &[&(Family::Ipv4 as i64), &mask],
        "peers_good",
    )?;
    for (sql, index) in DUE_SQL {
        explain(conn, sql, &[&now, &1000, &FamilySet::ALL.bits()], index)?;
    }
    for (sql, index) in HIDDEN_DUE_SQL {
        explain(conn, sql, &[&now, &1000, &(Family::Onion as i64)], index)?;
    }
    Ok(())
}

/// Prints `EXPLAIN QUERY PLAN` of `sql` and checks that it uses `index`.
fn explain(conn: &Connection, sql: &str, params: &[&dyn ToSql], index: &str) -> anyhow::Result<()> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let plan = stmt
        .query_map(params, |r| r.get::<_, String>(3))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    println!("EXPLAIN QUERY PLAN {sql}");
    for detail in &plan {
        println!("  {detail}");
    }
    anyhow::ensure!(
        plan.iter().any(|d| d.contains(index)),
        "the plan of {sql} does not use {index}: a change to the query or to the indexes \
         (src/store.rs) made SQLite choose another plan"
    );
    Ok(())
}

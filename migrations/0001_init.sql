-- dnsseeder schema, version 1.
-- One row per address the seeder has heard of. Timestamps are UNIX seconds.
-- The five reliability windows (2h, 8h, 1d, 1w, 1m) follow sipa's seeder: see docs/schema.md.

CREATE TABLE peers (
    id               INTEGER PRIMARY KEY,
    address          TEXT    NOT NULL UNIQUE,          -- '1.2.3.4:8333', '[2001:db8::1]:8333', 'x.onion:8333'
    family           INTEGER NOT NULL,                 -- 1 ipv4, 2 ipv6, 3 onion, 4 i2p, 5 cjdns
    services         INTEGER NOT NULL DEFAULT 0,       -- service bits: services & 9 = 9
    source           TEXT    NOT NULL,                 -- seed, dns-seed, gossip, import
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER,                          -- newest gossip timestamp heard for it
    tries            INTEGER NOT NULL DEFAULT 0,
    successes        INTEGER NOT NULL DEFAULT 0,
    failures_in_row  INTEGER NOT NULL DEFAULT 0,
    last_try         INTEGER,
    last_success     INTEGER,
    last_error       TEXT,                             -- NULL after a success; refused, timeout, ...
    last_getaddr     INTEGER,
    reliability_2h   REAL NOT NULL DEFAULT 0, count_2h REAL NOT NULL DEFAULT 0, weight_2h REAL NOT NULL DEFAULT 0,
    reliability_8h   REAL NOT NULL DEFAULT 0, count_8h REAL NOT NULL DEFAULT 0, weight_8h REAL NOT NULL DEFAULT 0,
    reliability_1d   REAL NOT NULL DEFAULT 0, count_1d REAL NOT NULL DEFAULT 0, weight_1d REAL NOT NULL DEFAULT 0,
    reliability_1w   REAL NOT NULL DEFAULT 0, count_1w REAL NOT NULL DEFAULT 0, weight_1w REAL NOT NULL DEFAULT 0,
    reliability_1m   REAL NOT NULL DEFAULT 0, count_1m REAL NOT NULL DEFAULT 0, weight_1m REAL NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 0,
    user_agent       TEXT    NOT NULL DEFAULT '',
    start_height     INTEGER NOT NULL DEFAULT 0,
    good             INTEGER NOT NULL DEFAULT 0 CHECK (good IN (0, 1)),
    banned_until     INTEGER NOT NULL DEFAULT 0,
    ban_reason       TEXT,
    next_try         INTEGER                           -- NULL: never dialed (no route to this family)
);

-- Scheduler: due addresses by next_try, one index per class so that peers which
-- answered before go first, then never-tried ones, then failing ones.
CREATE INDEX peers_due_answered ON peers (next_try) WHERE last_success IS NOT NULL;
CREATE INDEX peers_due_new      ON peers (next_try) WHERE last_success IS NULL AND tries = 0;
CREATE INDEX peers_due_failing  ON peers (next_try) WHERE last_success IS NULL AND tries > 0;

-- DNS: good peers by family and services (covering: the answer needs only the address).
CREATE INDEX peers_good ON peers (family, services, address) WHERE good = 1;

-- Eviction and pruning: never-reached addresses, oldest first.
CREATE INDEX peers_never_reached ON peers (first_seen) WHERE last_success IS NULL;

-- For humans: the peers DNS may serve, best first.
CREATE VIEW good_peers AS
SELECT address,
       printf('%08x', services) AS services_hex,
       services,
       round(100 * reliability_2h, 2) AS pct_2h,
       round(100 * reliability_1d, 2) AS pct_1d,
       round(100 * reliability_1m, 2) AS pct_1m,
       version,
       user_agent,
       start_height,
       datetime(last_success, 'unixepoch') AS last_success_utc
FROM peers
WHERE good = 1
ORDER BY reliability_1m DESC;

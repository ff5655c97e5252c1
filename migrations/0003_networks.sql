-- dnsseeder schema, version 3: Tor v3, I2P and CJDNS peers are crawled (SPEC §9), through
-- SOCKS5 proxies or directly, when the operator gives the flag of their network. Every
-- address now has a due time; the scheduler asks only for the families it can reach, so a
-- row of a network without a route waits, due, until one is configured.

-- Rows of version 2 stored onion, I2P and CJDNS addresses with no due time: make them due.
UPDATE peers SET next_try = coalesce(last_try, first_seen)
    WHERE next_try IS NULL AND family IN (3, 5);
-- I2P addresses are dialed on port 0 only (as in Bitcoin Core): others stay never due.
UPDATE peers SET next_try = coalesce(last_try, first_seen)
    WHERE next_try IS NULL AND family = 4 AND address LIKE '%:0';

-- The scheduler selects the due rows of one hidden network at a time (a proxy's, or CJDNS
-- alone when --proxy carries IPv4 and IPv6). In the indexes above those rows are a few
-- among many: finding a handful of them read every due row of the other networks. These
-- partial indexes hold only onion, I2P and CJDNS rows, in the same three classes and orders.
CREATE INDEX peers_hidden_due_answered ON peers (family, next_try)
    WHERE last_success IS NOT NULL AND family >= 3;
CREATE INDEX peers_hidden_due_new ON peers (family, evidence DESC, source_rank, next_try)
    WHERE last_success IS NULL AND tries = 0 AND family >= 3;
CREATE INDEX peers_hidden_due_failing ON peers (family, next_try)
    WHERE last_success IS NULL AND tries > 0 AND family >= 3;

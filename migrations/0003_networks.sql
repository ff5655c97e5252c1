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

-- dnsseeder schema, version 4: the transport of BIP324 (SPEC §10). Bitcoin Core offers the
-- encrypted v2 transport and expects seed addresses that advertise P2P_V2 (bit 11) to speak
-- it; answers for masks with that bit hold only peers whose last successful probe was v2.

-- 'v1' or 'v2': the transport of the last successful probe; NULL until one succeeded (and for
-- every row of version 3, whose probes were all v1 but are not known to have succeeded since).
ALTER TABLE peers ADD COLUMN transport TEXT CHECK (transport IN ('v1', 'v2'));

-- The DNS answer sets: the covering index gains the transport, which the masks with P2P_V2
-- filter on.
DROP INDEX peers_good;
CREATE INDEX peers_good ON peers (family, services, transport, address) WHERE good = 1;

-- Good peers that advertise P2P_V2 are due at once: until a v2 probe succeeds, the answers
-- for masks with P2P_V2 leave them out.
UPDATE peers SET next_try = min(coalesce(next_try, 0), CAST(strftime('%s', 'now') AS INTEGER))
    WHERE good = 1 AND services & 2048 != 0;

-- dnsseeder schema, version 2: evidence for never-tried addresses (SPEC §5, "Evidence
-- before gossip"). Most gossiped addresses are stale or made up; an address announced by
-- many distinct sources is more likely real, and no single source may take more than its
-- share of the probes.

-- Which announcing source groups have announced the address: bit (group hash mod 64) of
-- each (a source group is the announcing peer's netgroup; on a test network with
-- --allow-private, the announcing peer's IP). 0 for seeds, imports and rows from version 1.
ALTER TABLE peers ADD COLUMN source_bits INTEGER NOT NULL DEFAULT 0;
-- Distinct announcing source groups seen: the bits set in source_bits (at most 64).
ALTER TABLE peers ADD COLUMN evidence INTEGER NOT NULL DEFAULT 0;
-- How many addresses its first announcer had given us before it (this run): ranks
-- interleave the sources within an evidence level, so each gets its share.
ALTER TABLE peers ADD COLUMN source_rank INTEGER NOT NULL DEFAULT 0;

-- Never-tried addresses: the most evidence first, then each source's in turn, then by
-- due time; read backwards, the same index gives eviction its order (weakest first).
DROP INDEX peers_due_new;
CREATE INDEX peers_due_new ON peers (evidence DESC, source_rank, next_try)
    WHERE last_success IS NULL AND tries = 0;

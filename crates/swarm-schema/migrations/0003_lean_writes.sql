-- Migration 3: a write touches two B-trees, its record and its audit row.
--
-- The audit row of a memory change is also its change-feed entry: it carries the record's
-- namespace, key and scope, so the change feed is read from audit_log through the ACL
-- predicate, and a record's version is the sequence number of the audit row that wrote it
-- plus a fixed offset (unique, rising, never reused). The separate change table and the
-- audit indexes each cost a page per commit and go; audit rows are read by sequence (the
-- tail, verification, the feed), never by time or actor. Rows written from now on use
-- hash format 2, which covers the new columns (docs/FORMAT.md section 5); older rows keep
-- format 1.
ALTER TABLE audit_log ADD COLUMN fmt INTEGER NOT NULL DEFAULT 1 CHECK (fmt IN (1, 2));
ALTER TABLE audit_log ADD COLUMN namespace TEXT;
ALTER TABLE audit_log ADD COLUMN key TEXT;
ALTER TABLE audit_log ADD COLUMN acl_level INTEGER CHECK (acl_level IS NULL OR acl_level BETWEEN 1 AND 5);
ALTER TABLE audit_log ADD COLUMN owner_id TEXT;
ALTER TABLE audit_log ADD COLUMN team_id TEXT;

-- Versions used to come from meta.revision, which could run ahead of the audit log (one
-- audit row per mset, one revision per record). A fixed offset keeps every later version
-- above every earlier one: a version is now audit seq + version_offset.
INSERT INTO meta (key, value) SELECT 'version_offset', max(0,
    coalesce((SELECT value FROM meta WHERE key = 'revision'), 0) - coalesce((SELECT max(seq) FROM audit_log), 0),
    coalesce((SELECT max(version) FROM memory), 0) - coalesce((SELECT max(seq) FROM audit_log), 0));
DELETE FROM meta WHERE key = 'revision';

-- Feed positions of the old change table mean nothing in the audit sequence: the relay's
-- cursors restart at the head (changes made before the upgrade are not relayed again).
UPDATE meta SET value = coalesce((SELECT max(seq) FROM audit_log), 0)
    WHERE key LIKE 'cursor:relay-memory-%';

DROP INDEX audit_log_by_time;
DROP INDEX audit_log_by_actor;
DROP TABLE memory_changes;

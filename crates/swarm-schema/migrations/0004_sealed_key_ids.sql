-- Migration 4: every sealed column says which key seals it, and artifact names stop
-- leaking private artifacts.
--
-- Key rotation and the key report found sealed rows through memory.key_id only, so
-- artifacts and event payloads stayed under old keys that could then never be retired.
-- artifacts.key_id and events.key_id now record the key id of the envelope (NULL when it is
-- plain), like memory.key_id, filled here from each envelope's header (docs/FORMAT.md 1.1:
-- flags bit 1 set means encrypted, the key id is bytes 3-6, big-endian).
--
-- Artifact versions used to be unique per (swarm, name, version), so a new version had to
-- continue the newest version of the name, visible or not: writing under a name whose
-- newest version was someone else's private artifact was refused, which told the writer
-- the name was taken (and a private continuation locked everybody else out of a shared
-- name). A new version now continues the newest version the writer can see, or starts a
-- chain at 1, so a hidden artifact changes nothing the writer can observe; versions count
-- along their chain (previous_id) and are no longer unique per name. Dropping a UNIQUE
-- constraint takes a table rebuild; the rows keep their rowids (latest_artifact breaks
-- ties by rowid), and the new table references itself under its final name after the
-- rename.
CREATE TABLE artifacts_v4 (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 512),
    version INTEGER NOT NULL CHECK (version >= 1),
    previous_id TEXT REFERENCES artifacts_v4 (id),
    task_id TEXT REFERENCES tasks (id) ON DELETE SET NULL,
    owner_id TEXT REFERENCES agents (id),
    team_id TEXT REFERENCES teams (id),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    format TEXT NOT NULL DEFAULT 'application/octet-stream',
    content BLOB NOT NULL,
    -- The key id of the envelope in `content`; NULL when it is plain.
    key_id INTEGER CHECK (key_id IS NULL OR key_id BETWEEN 0 AND 4294967295),
    content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
    size INTEGER NOT NULL CHECK (size >= 0),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (acl_level <> 1 OR owner_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL)
);

-- In rowid order, so every previous version is copied before the versions that follow it.
INSERT INTO artifacts_v4 (rowid, id, swarm_id, name, version, previous_id, task_id, owner_id, team_id,
    acl_level, format, content, key_id, content_hash, size, metadata, created_at, updated_at)
SELECT rowid, id, swarm_id, name, version, previous_id, task_id, owner_id, team_id, acl_level, format,
    content,
    CASE WHEN length(content) >= 7 AND hex(substr(content, 1, 2)) IN ('0102', '0103') THEN
          (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 1, 1)) - 1) * 268435456
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 2, 1)) - 1) * 16777216
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 3, 1)) - 1) * 1048576
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 4, 1)) - 1) * 65536
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 5, 1)) - 1) * 4096
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 6, 1)) - 1) * 256
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 7, 1)) - 1) * 16
        + (instr('0123456789ABCDEF', substr(hex(substr(content, 4, 4)), 8, 1)) - 1)
    END,
    content_hash, size, metadata, created_at, updated_at
FROM artifacts ORDER BY rowid;

DROP TABLE artifacts;
ALTER TABLE artifacts_v4 RENAME TO artifacts;

CREATE INDEX artifacts_by_name ON artifacts (swarm_id, name, version);
CREATE INDEX artifacts_by_task ON artifacts (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX artifacts_by_owner ON artifacts (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX artifacts_by_key_id ON artifacts (key_id) WHERE key_id IS NOT NULL;

-- Re-sealing under another key (content and key_id change together) is not an update of
-- the artifact.
CREATE TRIGGER artifacts_touch AFTER UPDATE ON artifacts FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at AND NEW.key_id IS OLD.key_id
BEGIN
    UPDATE artifacts SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

ALTER TABLE events ADD COLUMN key_id INTEGER CHECK (key_id IS NULL OR key_id BETWEEN 0 AND 4294967295);
UPDATE events SET key_id =
          (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 1, 1)) - 1) * 268435456
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 2, 1)) - 1) * 16777216
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 3, 1)) - 1) * 1048576
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 4, 1)) - 1) * 65536
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 5, 1)) - 1) * 4096
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 6, 1)) - 1) * 256
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 7, 1)) - 1) * 16
        + (instr('0123456789ABCDEF', substr(hex(substr(payload, 4, 4)), 8, 1)) - 1)
    WHERE length(payload) >= 7 AND hex(substr(payload, 1, 2)) IN ('0102', '0103');
CREATE INDEX events_by_key_id ON events (key_id) WHERE key_id IS NOT NULL;

-- swarm-memory schema, migration 1: the seed's twelve tables and the tables they need.
--
-- Conventions: every time is INTEGER Unix milliseconds (exact comparisons, no string
-- dates); enumerations and ranges are CHECK constraints; JSON columns are checked with
-- json_valid; ids are TEXT. A shipped migration is never edited: add a new one.

-- Counters the store keeps transactionally: the ACL generation (bumped by every grant,
-- revoke, membership or status change, so cached principals in every process go stale)
-- and the commit revision (versions of memory records are drawn from it).
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('acl_generation', 1), ('revision', 0);

CREATE TABLE swarms (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config) AND json_type(config) = 'object'),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- An agent row is never deleted: unregistering terminates it, so an id can never be
-- reused by a newcomer who would inherit the old agent's private records.
CREATE TABLE agents (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    type TEXT NOT NULL CHECK (length(type) BETWEEN 1 AND 128),
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'inactive', 'suspended', 'terminated')),
    capabilities TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(capabilities) AND json_type(capabilities) = 'array'),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    -- BLAKE3 of the 256-bit bearer token; the token itself is shown once and never stored.
    token_hash BLOB NOT NULL CHECK (length(token_hash) = 32),
    token_issued_at INTEGER NOT NULL,
    last_seen_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX agents_by_swarm_status ON agents (swarm_id, status);
CREATE INDEX agents_by_type ON agents (type);

CREATE TABLE teams (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    description TEXT NOT NULL DEFAULT '',
    leader_id TEXT REFERENCES agents (id),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (swarm_id, name)
) WITHOUT ROWID;

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, agent_id)
) WITHOUT ROWID;

CREATE INDEX team_members_by_agent ON team_members (agent_id, team_id);

-- A team belongs to one swarm and so do its members.
CREATE TRIGGER team_members_same_swarm
BEFORE INSERT ON team_members
FOR EACH ROW
WHEN (SELECT swarm_id FROM agents WHERE id = NEW.agent_id)
    IS NOT (SELECT swarm_id FROM teams WHERE id = NEW.team_id)
BEGIN
    SELECT RAISE(ABORT, 'agent and team belong to different swarms');
END;

-- One row per (agent, resource type, action, level): the agent may perform the action on
-- records of the resource type up to and including the level, until expires_at.
CREATE TABLE permissions (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    resource_type TEXT NOT NULL CHECK (resource_type IN
        ('memory', 'task', 'event', 'consensus', 'artifact', 'metrics', 'audit', 'system')),
    action TEXT NOT NULL CHECK (action IN ('read', 'write', 'delete', 'vote', 'admin')),
    level INTEGER NOT NULL CHECK (level BETWEEN 1 AND 5),
    expires_at INTEGER,
    granted_by TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, resource_type, action, level)
) WITHOUT ROWID;

-- Keys known to this database: only a check value, never key material, so the store can
-- tell a wrong key from a tampered record at open.
CREATE TABLE encryption_keys (
    key_id INTEGER PRIMARY KEY NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    cipher TEXT NOT NULL CHECK (cipher IN ('aes-256-gcm', 'chacha20-poly1305', 'xchacha20-poly1305')),
    check_value BLOB NOT NULL CHECK (length(check_value) = 16),
    status TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);

CREATE UNIQUE INDEX encryption_keys_one_active ON encryption_keys (status) WHERE status = 'active';

-- Agent memory. `value` is a swarm-codec envelope; `size` is the plaintext length.
-- `version` is drawn from meta.revision, so it rises on every write and is never reused,
-- even after a delete and re-create (compare-and-set cannot suffer ABA).
CREATE TABLE memory (
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    namespace TEXT NOT NULL CHECK (length(namespace) BETWEEN 1 AND 256),
    key TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 1024),
    owner_id TEXT REFERENCES agents (id),
    team_id TEXT REFERENCES teams (id),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    value_type TEXT NOT NULL CHECK (value_type IN ('bytes', 'text', 'json', 'integer')),
    value BLOB NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    key_id INTEGER,
    tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    version INTEGER NOT NULL CHECK (version >= 1),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    access_count INTEGER NOT NULL DEFAULT 0 CHECK (access_count >= 0),
    last_accessed_at INTEGER,
    PRIMARY KEY (swarm_id, namespace, key),
    CHECK (acl_level <> 1 OR owner_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL)
) WITHOUT ROWID;

CREATE INDEX memory_by_expiry ON memory (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memory_by_owner ON memory (owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX memory_by_key_id ON memory (key_id) WHERE key_id IS NOT NULL;

-- The change feed: one row per memory mutation, never carrying the value. Watchers resume
-- from a seq; retention trims the oldest rows.
CREATE TABLE memory_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    revision INTEGER NOT NULL,
    swarm_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('set', 'delete', 'expire')),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    owner_id TEXT,
    team_id TEXT,
    version INTEGER NOT NULL,
    at INTEGER NOT NULL
);

CREATE INDEX memory_changes_by_time ON memory_changes (at);

-- Tamper-evident audit trail: hash = BLAKE3(prev_hash || canonical row); verify walks it.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource TEXT NOT NULL,
    swarm_id TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'conflict', 'error')),
    detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_actor ON audit_log (actor, at);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    parent_id TEXT REFERENCES tasks (id) ON DELETE SET NULL,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 512),
    description TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL DEFAULT 'general' CHECK (length(type) BETWEEN 1 AND 128),
    priority INTEGER NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'claimed', 'in_progress', 'blocked', 'completed', 'failed', 'cancelled')),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    owner_id TEXT REFERENCES agents (id),
    team_id TEXT REFERENCES teams (id),
    assignee_agent_id TEXT REFERENCES agents (id),
    assignee_team_id TEXT REFERENCES teams (id),
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    requirements TEXT NOT NULL DEFAULT '[]'
        CHECK (json_valid(requirements) AND json_type(requirements) = 'array'),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    result TEXT CHECK (result IS NULL OR json_valid(result)),
    -- The lease: who holds the claim until when; the fencing token rises on every claim.
    lease_holder TEXT REFERENCES agents (id),
    lease_expires_at INTEGER,
    fencing_token INTEGER NOT NULL DEFAULT 0 CHECK (fencing_token >= 0),
    deadline_at INTEGER,
    estimated_hours REAL CHECK (estimated_hours IS NULL OR estimated_hours >= 0),
    actual_hours REAL CHECK (actual_hours IS NULL OR actual_hours >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    CHECK (acl_level <> 1 OR owner_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL),
    CHECK ((lease_holder IS NULL) = (lease_expires_at IS NULL))
);

CREATE INDEX tasks_by_swarm_status ON tasks (swarm_id, status, priority DESC, created_at);
CREATE INDEX tasks_by_assignee ON tasks (assignee_agent_id) WHERE assignee_agent_id IS NOT NULL;
CREATE INDEX tasks_by_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_by_lease_expiry ON tasks (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- Edges of the dependency graph: `dependent` waits on `dependency`.
CREATE TABLE dependencies (
    id INTEGER PRIMARY KEY,
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    dependent_type TEXT NOT NULL CHECK (dependent_type IN ('task', 'artifact', 'agent', 'consensus')),
    dependent_id TEXT NOT NULL,
    dependency_type TEXT NOT NULL CHECK (dependency_type IN ('task', 'artifact', 'agent', 'consensus')),
    dependency_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'hard' CHECK (kind IN ('hard', 'soft', 'optional')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (dependent_type, dependent_id, dependency_type, dependency_id),
    CHECK (dependent_type <> dependency_type OR dependent_id <> dependency_id)
);

CREATE INDEX dependencies_by_dependency ON dependencies (dependency_type, dependency_id);

-- Task-to-task edges must name existing tasks, and go when a task goes.
CREATE TRIGGER dependencies_task_exists
BEFORE INSERT ON dependencies
FOR EACH ROW
WHEN (NEW.dependent_type = 'task' AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.dependent_id))
    OR (NEW.dependency_type = 'task' AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = NEW.dependency_id))
BEGIN
    SELECT RAISE(ABORT, 'dependency names a task that does not exist');
END;

CREATE TRIGGER tasks_delete_dependencies
AFTER DELETE ON tasks
FOR EACH ROW
BEGIN
    DELETE FROM dependencies
    WHERE (dependent_type = 'task' AND dependent_id = OLD.id)
       OR (dependency_type = 'task' AND dependency_id = OLD.id);
END;

-- The durable event bus: a log ordered by seq and a queue (status, attempts, visibility).
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    type TEXT NOT NULL CHECK (length(type) BETWEEN 1 AND 128),
    source_id TEXT REFERENCES agents (id),
    target_id TEXT,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 10),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    team_id TEXT REFERENCES teams (id),
    parent_seq INTEGER REFERENCES events (seq) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'claimed', 'acked', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_retries INTEGER NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 1000),
    claimed_by TEXT,
    visible_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    acked_at INTEGER,
    CHECK (acl_level <> 1 OR source_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL)
);

CREATE INDEX events_claimable ON events (swarm_id, status, priority DESC, seq);
CREATE INDEX events_by_expiry ON events (expires_at) WHERE expires_at IS NOT NULL;

-- Where each durable consumer left off in the event log.
CREATE TABLE event_cursors (
    consumer TEXT NOT NULL,
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    last_seq INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, swarm_id)
) WITHOUT ROWID;

CREATE TABLE consensus (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    target_id TEXT NOT NULL,
    target_type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    strategy TEXT NOT NULL CHECK (strategy IN ('majority', 'weighted', 'unanimous', 'threshold')),
    threshold REAL NOT NULL CHECK (threshold > 0 AND threshold <= 1),
    quorum INTEGER NOT NULL DEFAULT 1 CHECK (quorum >= 1),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'achieved', 'failed', 'expired')),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    owner_id TEXT REFERENCES agents (id),
    team_id TEXT REFERENCES teams (id),
    votes_for INTEGER NOT NULL DEFAULT 0 CHECK (votes_for >= 0),
    votes_against INTEGER NOT NULL DEFAULT 0 CHECK (votes_against >= 0),
    weight_for REAL NOT NULL DEFAULT 0 CHECK (weight_for >= 0),
    weight_against REAL NOT NULL DEFAULT 0 CHECK (weight_against >= 0),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    deadline_at INTEGER,
    decided_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (acl_level <> 1 OR owner_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL),
    CHECK ((status = 'open') = (decided_at IS NULL))
);

CREATE INDEX consensus_by_swarm_status ON consensus (swarm_id, status, deadline_at);
CREATE INDEX consensus_by_target ON consensus (target_type, target_id);

-- An outcome is recorded once and never flipped, whatever SQL runs later.
CREATE TRIGGER consensus_outcome_final
BEFORE UPDATE OF status ON consensus
FOR EACH ROW
WHEN OLD.status <> 'open' AND NEW.status IS NOT OLD.status
BEGIN
    SELECT RAISE(ABORT, 'consensus outcome is final');
END;

CREATE TABLE consensus_votes (
    consensus_id TEXT NOT NULL REFERENCES consensus (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL REFERENCES agents (id),
    approve INTEGER NOT NULL CHECK (approve IN (0, 1)),
    confidence REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    reason TEXT NOT NULL DEFAULT '',
    cast_at INTEGER NOT NULL,
    PRIMARY KEY (consensus_id, agent_id)
) WITHOUT ROWID;

CREATE TABLE artifacts (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 512),
    version INTEGER NOT NULL CHECK (version >= 1),
    previous_id TEXT REFERENCES artifacts (id),
    task_id TEXT REFERENCES tasks (id) ON DELETE SET NULL,
    owner_id TEXT REFERENCES agents (id),
    team_id TEXT REFERENCES teams (id),
    acl_level INTEGER NOT NULL CHECK (acl_level BETWEEN 1 AND 5),
    format TEXT NOT NULL DEFAULT 'application/octet-stream',
    content BLOB NOT NULL,
    content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
    size INTEGER NOT NULL CHECK (size >= 0),
    metadata TEXT NOT NULL DEFAULT '{}'
        CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (swarm_id, name, version),
    CHECK (acl_level <> 1 OR owner_id IS NOT NULL),
    CHECK (acl_level <> 2 OR team_id IS NOT NULL)
);

CREATE INDEX artifacts_by_task ON artifacts (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX artifacts_by_owner ON artifacts (owner_id) WHERE owner_id IS NOT NULL;

CREATE TABLE conflicts (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
    swarm_id TEXT NOT NULL REFERENCES swarms (id),
    type TEXT NOT NULL CHECK (type IN
        ('version_mismatch', 'concurrent_claim', 'consensus_split', 'dependency_clash')),
    severity TEXT NOT NULL DEFAULT 'medium' CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    entity_a_type TEXT NOT NULL,
    entity_a_id TEXT NOT NULL,
    entity_b_type TEXT,
    entity_b_id TEXT,
    description TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
    strategy TEXT NOT NULL DEFAULT 'manual' CHECK (strategy IN
        ('last_write_wins', 'first_write_wins', 'merge', 'manual', 'consensus')),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'escalated', 'dismissed')),
    resolution TEXT,
    resolved_by TEXT,
    resolved_at INTEGER,
    consensus_id TEXT REFERENCES consensus (id),
    acl_level INTEGER NOT NULL DEFAULT 3 CHECK (acl_level BETWEEN 1 AND 5),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX conflicts_by_swarm_status ON conflicts (swarm_id, status, created_at);

CREATE TABLE metrics (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    kind TEXT NOT NULL CHECK (kind IN ('counter', 'gauge', 'histogram')),
    labels TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    value REAL NOT NULL,
    count INTEGER,
    p50 REAL,
    p95 REAL,
    p99 REAL
);

CREATE INDEX metrics_by_name_time ON metrics (name, at);
CREATE INDEX metrics_by_time ON metrics (at);

-- Messages for the coordination bus, written in the same transaction as the change that
-- caused them and relayed when a link is up, so a Redis outage loses nothing.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    swarm_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL CHECK (json_valid(message)),
    created_at INTEGER NOT NULL,
    relayed_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX outbox_pending ON outbox (seq) WHERE relayed_at IS NULL;

-- updated_at follows every UPDATE that did not set it (hand-written SQL included). The
-- store sets it itself; recursive triggers are off, so this fires at most once per row.
-- For memory, access statistics and key rotation are not content changes and leave it.
CREATE TRIGGER swarms_touch AFTER UPDATE ON swarms FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE swarms SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER agents_touch AFTER UPDATE ON agents FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE agents SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER teams_touch AFTER UPDATE ON teams FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE teams SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER memory_touch AFTER UPDATE ON memory FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at AND NEW.version = OLD.version
    AND NEW.access_count = OLD.access_count AND NEW.key_id IS OLD.key_id
BEGIN
    UPDATE memory SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
    WHERE swarm_id = NEW.swarm_id AND namespace = NEW.namespace AND key = NEW.key;
END;

CREATE TRIGGER tasks_touch AFTER UPDATE ON tasks FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE tasks SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER consensus_touch AFTER UPDATE ON consensus FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE consensus SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER artifacts_touch AFTER UPDATE ON artifacts FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE artifacts SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

CREATE TRIGGER conflicts_touch AFTER UPDATE ON conflicts FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
BEGIN
    UPDATE conflicts SET updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE id = NEW.id;
END;

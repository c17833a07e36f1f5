-- Migration 2: conflicts carry the owner and team of what they are about, so the ACL
-- predicate decides who sees a conflict exactly as it decides who sees the record; and
-- the sweeper finds open conflicts to escalate without scanning resolved ones.
ALTER TABLE conflicts ADD COLUMN owner_id TEXT REFERENCES agents (id);
ALTER TABLE conflicts ADD COLUMN team_id TEXT REFERENCES teams (id);

CREATE INDEX conflicts_open_by_age ON conflicts (created_at) WHERE status = 'open';

-- Claimable events are found per swarm by status and visibility time.
CREATE INDEX events_by_visibility ON events (swarm_id, status, visible_at);

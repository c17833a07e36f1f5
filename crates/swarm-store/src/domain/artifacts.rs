//! Artifacts: named outputs of agents and tasks, versioned (each version chained to the
//! previous one), sealed like memory values (compressed, and encrypted at the levels the
//! policy encrypts), with a content hash.

use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, TeamId, Timestamp, sql_predicate,
};
use swarm_codec::Seal;

use super::{
    Scope, allowed, audit, check_text, columns, deny, json_object, new_id, new_scope, own_swarm,
    payload_aad,
};
use crate::audit::Outcome;
use crate::error::{Result, StoreError};
use crate::sql::{Bind, push_pred, u64_of};
use crate::store::{Shared, Store};

const COLS: swarm_acl::SqlColumns<'static> =
    columns("a.acl_level", "a.swarm_id", "a.owner_id", "a.team_id");
const RESOURCE: ResourceType = ResourceType::Artifact;

/// An artifact version to store.
#[derive(Clone, Debug)]
pub struct ArtifactSpec {
    name: String,
    content: Vec<u8>,
    format: String,
    task: Option<String>,
    level: Option<AclLevel>,
    team: Option<TeamId>,
    metadata: serde_json::Value,
}

impl ArtifactSpec {
    /// `content` under `name` (format `application/octet-stream`, private level).
    pub fn new(name: impl Into<String>, content: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            content,
            format: "application/octet-stream".into(),
            task: None,
            level: None,
            team: None,
            metadata: serde_json::json!({}),
        }
    }
    /// The format (a MIME type or a short name such as `markdown`).
    pub fn format(mut self, f: impl Into<String>) -> Self {
        self.format = f.into();
        self
    }
    /// The task it is an output of.
    pub fn task(mut self, id: impl Into<String>) -> Self {
        self.task = Some(id.into());
        self
    }
    /// ACL level (default private).
    pub fn level(mut self, l: AclLevel) -> Self {
        self.level = Some(l);
        self
    }
    /// Team, for team-level artifacts.
    pub fn team(mut self, t: TeamId) -> Self {
        self.team = Some(t);
        self
    }
    /// Metadata (a JSON object).
    pub fn metadata(mut self, m: serde_json::Value) -> Self {
        self.metadata = m;
        self
    }
}

/// An artifact version's description (no content).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArtifactInfo {
    /// Id of this version.
    pub id: String,
    /// Swarm.
    pub swarm: SwarmId,
    /// Name (versions share it).
    pub name: String,
    /// Version, from 1.
    pub version: u64,
    /// The previous version's id.
    pub previous: Option<String>,
    /// The task it belongs to.
    pub task: Option<String>,
    /// Creator.
    pub owner: Option<AgentId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Level.
    pub level: AclLevel,
    /// Format.
    pub format: String,
    /// Content size in bytes.
    pub size: u64,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Stored.
    pub created_at: Timestamp,
}

/// An artifact version with its content.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Artifact {
    /// Description.
    pub info: ArtifactInfo,
    /// The content.
    pub content: Vec<u8>,
    /// BLAKE3 of the content, hex.
    pub content_hash: String,
}

/// Filters of `list_artifacts`.
#[derive(Clone, Debug, Default)]
pub struct ArtifactFilter {
    /// Versions of this name.
    pub name: Option<String>,
    /// Outputs of this task.
    pub task: Option<String>,
    /// By this agent.
    pub owner: Option<AgentId>,
    /// Only the newest version of each name.
    pub latest_only: bool,
    /// Most returned (1-1000, default 100).
    pub limit: Option<usize>,
}

/// The newest version of a name: id, version, level, owner, team.
type LatestRow = (String, i64, i64, Option<String>, Option<String>);

/// "Newest first" among versions of a name (`a` is the artifacts table): the highest
/// version, then the most recently stored, then the last inserted. (A name holds one chain;
/// the tie-breaks only order what databases written between schema 4 and this rule may
/// hold.)
const NEWEST_FIRST: &str = "a.version DESC, a.created_at DESC, a.rowid DESC";
/// [`NEWEST_FIRST`] for the table aliased `b`.
const NEWEST_FIRST_B: &str = "b.version DESC, b.created_at DESC, b.rowid DESC";

const INFO_COLUMNS: &str = "a.id, a.swarm_id, a.name, a.version, a.previous_id, a.task_id, a.owner_id, a.team_id, \
    a.acl_level, a.format, a.size, a.metadata, a.created_at";

fn info_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ArtifactInfo>> {
    let id: String = r.get(0)?;
    let swarm: String = r.get(1)?;
    let name: String = r.get(2)?;
    let version: i64 = r.get(3)?;
    let (previous, task, owner, team): (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let level: i64 = r.get(8)?;
    let format: String = r.get(9)?;
    let size: i64 = r.get(10)?;
    let metadata: String = r.get(11)?;
    let created: i64 = r.get(12)?;
    Ok((|| {
        let scope = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
        Ok(ArtifactInfo {
            swarm: SwarmId::new(&swarm)
                .map_err(|e| StoreError::Corrupt(format!("artifact {id}: {e}")))?,
            name,
            version: u64_of(version),
            previous,
            task,
            owner: scope.owner,
            team: scope.team,
            level: scope.level,
            format,
            size: u64_of(size),
            metadata: serde_json::from_str(&metadata).unwrap_or_else(|_| serde_json::json!({})),
            created_at: Timestamp::from_millis(created),
            id,
        })
    })())
}

/// The hash stored in the `content_hash` column: of the content for levels stored in
/// plaintext, of the sealed envelope for encrypted levels (so the database does not let
/// anyone confirm a guess of an encrypted artifact's content). Readers always get the hash
/// of the content, computed after opening it.
fn stored_hash(shared: &Shared, level: AclLevel, content: &[u8], sealed: &[u8]) -> [u8; 32] {
    if shared.encrypts_level(level) {
        *blake3::hash(sealed).as_bytes()
    } else {
        *blake3::hash(content).as_bytes()
    }
}

impl Store {
    /// Stores a new version of the artifact `name`, chained to the newest version of the
    /// name (version 1 for a new name). Continuing needs read and write permission on the
    /// newest version, and only its owner may change its level or team; a name whose
    /// newest version `who` cannot see is refused (permission denied) without saying
    /// anything of what holds it, as a memory key is.
    pub fn store_artifact(&self, who: &Identity, spec: ArtifactSpec) -> Result<ArtifactInfo> {
        check_text("artifact name", &spec.name, 512, false)?;
        check_text("format", &spec.format, 128, false)?;
        let max = self.shared.config.limits.max_value_len;
        if spec.content.len() > max {
            return Err(StoreError::invalid(format!(
                "artifact is {} bytes, the limit is {max}",
                spec.content.len()
            )));
        }
        let metadata = json_object("metadata", &spec.metadata, 64 * 1024)?;
        let id = new_id("art");
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let Some(swarm) = p.as_agent().map(|a| a.swarm().clone()) else {
                    return Ok(Err(StoreError::invalid("artifacts are stored by agents")));
                };
                let scope = new_scope(p, spec.level, spec.team.as_ref(), AclLevel::Private)?;
                if !allowed(p, Action::Write, RESOURCE, &scope, &swarm, now) || !own_swarm(p, &swarm) {
                    return Ok(Err(deny(ctx, p, "artifact.store", "artifact", &spec.name, &swarm, "no write permission on artifacts at this level", now)?));
                }
                // The version continued is the newest of the name, seen or not: a name
                // holds one chain (docs/DECISIONS.md, "Artifact names"). A writer who cannot
                // see it is refused as for a memory key held by a record it cannot access:
                // that says the name is taken, never what holds it, and no outsider can
                // start a second chain that readers of the first would take for its newest
                // version.
                let latest: Option<LatestRow> = ctx
                    .conn()
                    .prepare_cached(&format!(
                        "SELECT a.id, a.version, a.acl_level, a.owner_id, a.team_id FROM artifacts AS a \
                         WHERE a.swarm_id = ?1 AND a.name = ?2 ORDER BY {NEWEST_FIRST} LIMIT 1"
                    ))?
                    .query_row([swarm.as_str(), spec.name.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?;
                if let Some((_, _, level, owner, team)) = &latest {
                    let prev = Scope::parse(owner.as_deref(), team.as_deref(), *level)?;
                    if !allowed(p, Action::Read, RESOURCE, &prev, &swarm, now) {
                        return Ok(Err(deny(ctx, p, "artifact.store", "artifact", &spec.name, &swarm, "the name is held by an artifact you cannot access", now)?));
                    }
                    if !allowed(p, Action::Write, RESOURCE, &prev, &swarm, now) {
                        return Ok(Err(deny(ctx, p, "artifact.store", "artifact", &spec.name, &swarm, "no write permission on the newest version of this artifact", now)?));
                    }
                    // Only the owner of the version continued may change its scope: anyone
                    // else allowed to continue a shared artifact could otherwise narrow it
                    // (a private version) and lock everybody else out of the name.
                    let is_owner = p.as_agent().is_some_and(|a| prev.owner.as_ref() == Some(a.id()));
                    if !is_owner && (prev.level != scope.level || prev.team != scope.team) {
                        return Ok(Err(deny(ctx, p, "artifact.store", "artifact", &spec.name, &swarm, "only the owner of the newest version may change its level or team", now)?));
                    }
                }
                if let Some(task) = &spec.task {
                    let visible: Option<(i64, Option<String>, Option<String>, String)> = ctx
                        .conn()
                        .prepare_cached("SELECT acl_level, owner_id, team_id, swarm_id FROM tasks WHERE id = ?1")?
                        .query_row([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                        .optional()?;
                    let ok = match visible {
                        Some((level, owner, team, s)) => {
                            let ts = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
                            s == swarm.as_str() && allowed(p, Action::Read, ResourceType::Task, &ts, &swarm, now)
                        }
                        None => false,
                    };
                    if !ok {
                        return Ok(Err(StoreError::NotFound(format!("task {task}"))));
                    }
                }
                let aad = payload_aad("artifact", &swarm, &id, &scope);
                let codec_err = |source| StoreError::Codec { key: format!("artifact {id}"), source };
                let sealed = if shared.encrypts_level(scope.level) {
                    shared.codec().encode(&spec.content, Seal::Encrypt { aad: &aad }).map_err(codec_err)?
                } else {
                    shared.codec().encode(&spec.content, Seal::Plain).map_err(codec_err)?
                };
                let hash = stored_hash(shared, scope.level, &spec.content, &sealed);
                let key_id = swarm_codec::inspect(&sealed).map_err(codec_err)?.key_id().map(|k| i64::from(k.get()));
                let (previous, version) = match &latest {
                    Some((prev, v, ..)) => (Some(prev.clone()), v + 1),
                    None => (None, 1),
                };
                ctx.conn()
                    .prepare_cached(
                        "INSERT INTO artifacts (id, swarm_id, name, version, previous_id, task_id, owner_id, team_id, acl_level, \
                         format, content, content_hash, size, metadata, created_at, updated_at, key_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16)",
                    )?
                    .execute(rusqlite::params![
                        id,
                        swarm.as_str(),
                        spec.name,
                        version,
                        previous,
                        spec.task,
                        scope.owner.as_ref().map(AgentId::as_str),
                        scope.team.as_ref().map(TeamId::as_str),
                        scope.level.as_u8(),
                        spec.format,
                        sealed,
                        &hash[..],
                        i64::try_from(spec.content.len()).unwrap_or(i64::MAX),
                        metadata,
                        now.as_millis(),
                        key_id,
                    ])?;
                let detail = serde_json::json!({ "name": spec.name, "version": version, "size": spec.content.len() });
                audit(ctx, p, "artifact.store", "artifact", &id, &swarm, Outcome::Ok, detail, now)?;
                // Read back in the same transaction, not through the reader's ACL: write
                // and read grants are separate, and a writer who may not read this level
                // got an error for an artifact that was stored.
                let info = ctx
                    .conn()
                    .prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM artifacts AS a WHERE a.id = ?1"))?
                    .query_row([&id], info_from_row)??;
                Ok(Ok(info))
            })
            .and_then(|r| r)
    }

    /// An artifact version with its content, if `who` can see it.
    pub fn get_artifact(&self, who: &Identity, id: &str) -> Result<Option<Artifact>> {
        self.artifact_where(who, "a.id = ?1", id)
    }

    /// The newest version of the artifact `name` in `who`'s swarm, if `who` can see it.
    pub fn latest_artifact(&self, who: &Identity, name: &str) -> Result<Option<Artifact>> {
        self.artifact_where(
            who,
            &format!(
                "a.name = ?1 AND (?2 IS NULL OR a.swarm_id = ?2) ORDER BY {NEWEST_FIRST} LIMIT 1"
            ),
            name,
        )
    }

    fn artifact_where(
        &self,
        who: &Identity,
        clause: &str,
        value: &str,
    ) -> Result<Option<Artifact>> {
        let now = self.now();
        let found = self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = p.as_agent().map(|a| a.swarm().as_str().to_owned());
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 3);
            let (head, tail) = clause.split_once(" ORDER BY").map_or((clause, ""), |(h, t)| (h, t));
            let order = if tail.is_empty() { String::new() } else { format!(" ORDER BY{tail}") };
            let head = if head.contains("?2") {
                head.to_owned()
            } else {
                format!("{head} AND (?2 IS NULL OR ?2 IS NOT NULL)")
            };
            let sql = format!(
                "SELECT {INFO_COLUMNS}, a.content FROM artifacts AS a WHERE {head} AND {}{order}",
                pred.sql()
            );
            let mut binds = vec![Bind::Text(value), Bind::OptText(swarm.as_deref())];
            push_pred(&mut binds, &pred);
            let row = conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(binds), |r| {
                    Ok((info_from_row(r)?, r.get::<_, Vec<u8>>(13)?))
                })
                .optional()?;
            Ok(row)
        })?;
        let Some((info, sealed)) = found else { return Ok(None) };
        let info = info?;
        let scope = Scope { owner: info.owner.clone(), team: info.team.clone(), level: info.level };
        let aad = payload_aad("artifact", &info.swarm, &info.id, &scope);
        let codec_err = |source| StoreError::Codec { key: format!("artifact {}", info.id), source };
        let content = if self.shared.encrypts_level(info.level) {
            self.shared.codec_for(&sealed).decode_encrypted(&sealed, &aad).map_err(codec_err)?
        } else {
            self.shared.codec_for(&sealed).decode(&sealed, &aad).map_err(codec_err)?
        };
        let content_hash = blake3::hash(&content).to_hex().to_string();
        Ok(Some(Artifact { info, content, content_hash }))
    }

    /// Artifact versions `who` can see in its swarm (descriptions, no content), newest first.
    pub fn list_artifacts(
        &self,
        who: &Identity,
        filter: &ArtifactFilter,
    ) -> Result<Vec<ArtifactInfo>> {
        let now = self.now();
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = p.as_agent().map(|a| a.swarm().as_str().to_owned());
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 6);
            // The newest version the caller can see, as `latest_artifact` answers: a newer
            // version hidden from the caller (someone's private continuation) used to hide
            // the whole name from its list.
            let newest_pred = sql_predicate(
                p,
                Action::Read,
                RESOURCE,
                columns("b.acl_level", "b.swarm_id", "b.owner_id", "b.team_id"),
                now,
                6 + pred.params().len(),
            );
            let latest = if filter.latest_only {
                format!(
                    " AND a.rowid = (SELECT b.rowid FROM artifacts b WHERE b.swarm_id = a.swarm_id AND b.name = a.name AND {} \
                     ORDER BY {NEWEST_FIRST_B} LIMIT 1)",
                    newest_pred.sql(),
                )
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT {INFO_COLUMNS} FROM artifacts AS a WHERE (?1 IS NULL OR a.swarm_id = ?1) AND (?2 IS NULL OR a.name = ?2) \
                 AND (?3 IS NULL OR a.task_id = ?3) AND (?4 IS NULL OR a.owner_id = ?4){latest} AND {} \
                 ORDER BY a.created_at DESC, a.name, a.version DESC LIMIT ?5",
                pred.sql()
            );
            let mut binds = vec![
                Bind::OptText(swarm.as_deref()),
                Bind::OptText(filter.name.as_deref()),
                Bind::OptText(filter.task.as_deref()),
                Bind::OptText(filter.owner.as_ref().map(AgentId::as_str)),
                Bind::Int(i64::try_from(limit).unwrap_or(1000)),
            ];
            push_pred(&mut binds, &pred);
            if filter.latest_only {
                push_pred(&mut binds, &newest_pred);
            }
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), info_from_row)?;
            rows.map(|r| r?).collect()
        })
    }
}

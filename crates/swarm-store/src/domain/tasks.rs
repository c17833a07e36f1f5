//! Tasks with dependencies, leases and fencing tokens.
//!
//! Claiming a task is atomic (it runs in the writer): it takes a lease until an expiry
//! and raises the task's fencing token. Progress, completion, failure, release and renewal
//! must present the current token while the lease is live, so a holder whose lease
//! expired (and was taken over) cannot write over its successor.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, Principal, ResourceType, SwarmId, TeamId, Timestamp,
    sql_predicate,
};

use super::{
    Scope, allowed, audit, check_id, check_text, columns, deny, json_object, new_id, new_scope,
    own_swarm,
};
use crate::audit::Outcome;
use crate::error::{Result, StoreError};
use crate::sql::{Bind, i64_of, push_pred, u64_of};
use crate::store::Store;
use crate::txn::WriteCtx;

const COLS: swarm_acl::SqlColumns<'static> =
    columns("t.acl_level", "t.swarm_id", "t.owner_id", "t.team_id");
const RESOURCE: ResourceType = ResourceType::Task;

/// The life of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting to be claimed.
    Pending,
    /// Claimed under a lease, not started.
    Claimed,
    /// Being worked on (progress reported).
    InProgress,
    /// Held back by someone; not claimable until unblocked.
    Blocked,
    /// Done (terminal).
    Completed,
    /// Failed; may be retried (back to pending).
    Failed,
    /// Given up (terminal).
    Cancelled,
}

crate::names::string_forms!(TaskStatus, "task status", {
    Pending => "pending",
    Claimed => "claimed",
    InProgress => "in_progress",
    Blocked => "blocked",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Claimed,
        TaskStatus::InProgress,
        TaskStatus::Blocked,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    /// Whether a task may go from `self` to `to`. Claiming, progress, completion and
    /// release have their own operations; this table is what they all obey.
    pub fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Pending, Claimed | Blocked | Cancelled)
                | (Claimed, InProgress | Pending | Completed | Failed | Blocked | Cancelled)
                | (InProgress, Pending | Completed | Failed | Blocked | Cancelled)
                | (Blocked, Pending | Cancelled)
                | (Failed, Pending | Cancelled)
        )
    }

    /// Whether the task is held under a lease in this status.
    fn leased(self) -> bool {
        matches!(self, TaskStatus::Claimed | TaskStatus::InProgress)
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    id: Option<String>,
    swarm: Option<SwarmId>,
    title: String,
    description: String,
    task_type: String,
    priority: u8,
    level: Option<AclLevel>,
    team: Option<TeamId>,
    deadline: Option<Timestamp>,
    parent: Option<String>,
    requirements: Vec<String>,
    metadata: serde_json::Value,
    estimated_hours: Option<f64>,
}

impl TaskSpec {
    /// A task titled `title`: type `general`, priority 5, swarm level.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            id: None,
            swarm: None,
            title: title.into(),
            description: String::new(),
            task_type: "general".into(),
            priority: 5,
            level: None,
            team: None,
            deadline: None,
            parent: None,
            requirements: Vec::new(),
            metadata: serde_json::json!({}),
            estimated_hours: None,
        }
    }

    /// Use this id instead of a generated one.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    /// The swarm (the system principal must name one; agents use their own).
    pub fn swarm(mut self, s: SwarmId) -> Self {
        self.swarm = Some(s);
        self
    }
    /// Description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Type, such as `review`.
    pub fn task_type(mut self, t: impl Into<String>) -> Self {
        self.task_type = t.into();
        self
    }
    /// Priority 1 (lowest) to 10 (highest).
    pub fn priority(mut self, p: u8) -> Self {
        self.priority = p;
        self
    }
    /// ACL level (default swarm).
    pub fn level(mut self, l: AclLevel) -> Self {
        self.level = Some(l);
        self
    }
    /// Team, for team-level tasks.
    pub fn team(mut self, t: TeamId) -> Self {
        self.team = Some(t);
        self
    }
    /// Deadline.
    pub fn deadline(mut self, at: Timestamp) -> Self {
        self.deadline = Some(at);
        self
    }
    /// Parent task.
    pub fn parent(mut self, id: impl Into<String>) -> Self {
        self.parent = Some(id.into());
        self
    }
    /// Requirements (free text).
    pub fn requirements<I: IntoIterator<Item = S>, S: Into<String>>(mut self, r: I) -> Self {
        self.requirements = r.into_iter().map(Into::into).collect();
        self
    }
    /// Metadata (a JSON object).
    pub fn metadata(mut self, m: serde_json::Value) -> Self {
        self.metadata = m;
        self
    }
    /// Estimated hours.
    pub fn estimated_hours(mut self, h: f64) -> Self {
        self.estimated_hours = Some(h);
        self
    }
}

/// A lease on a claimed task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The agent holding it.
    pub holder: AgentId,
    /// When it lapses.
    pub expires_at: Timestamp,
}

/// A task as read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    /// Id.
    pub id: String,
    /// Swarm.
    pub swarm: SwarmId,
    /// Parent task.
    pub parent: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Type.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Priority 1-10.
    pub priority: u8,
    /// Status.
    pub status: TaskStatus,
    /// ACL level.
    pub level: AclLevel,
    /// Creator.
    pub owner: Option<AgentId>,
    /// Team (team-level tasks).
    pub team: Option<TeamId>,
    /// Assigned agent.
    pub assignee: Option<AgentId>,
    /// Assigned team.
    pub assignee_team: Option<TeamId>,
    /// Progress 0-100.
    pub progress: u8,
    /// Requirements.
    pub requirements: Vec<String>,
    /// Metadata.
    pub metadata: serde_json::Value,
    /// Result, once completed (or the failure reason).
    pub result: Option<serde_json::Value>,
    /// The current lease, if claimed.
    pub lease: Option<Lease>,
    /// Rises on every claim; operations under a lease must present it.
    pub fencing_token: u64,
    /// Deadline.
    pub deadline: Option<Timestamp>,
    /// Estimated hours.
    pub estimated_hours: Option<f64>,
    /// Actual hours, once completed.
    pub actual_hours: Option<f64>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// First claimed.
    pub started_at: Option<Timestamp>,
    /// Completed, failed or cancelled.
    pub completed_at: Option<Timestamp>,
}

/// A successful claim: the task and the fencing token to present until the lease ends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claim {
    /// The task, now claimed.
    pub task: Task,
    /// The fencing token.
    pub token: u64,
    /// When the lease lapses unless renewed.
    pub expires_at: Timestamp,
}

/// The result of completing a task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Completion {
    /// The task, now completed.
    pub task: Task,
    /// Tasks that became ready because this one completed (those the caller can see).
    pub ready: Vec<String>,
}

/// Who a task is assigned to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignee {
    /// Nobody: anyone allowed may claim it.
    Nobody,
    /// One agent: only it may claim.
    Agent(AgentId),
    /// A team: only its members may claim.
    Team(TeamId),
}

/// Kinds of dependency edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// The dependent may not start before the dependency completed.
    Hard,
    /// Should come first, but does not block.
    Soft,
    /// Informational.
    Optional,
}

crate::names::string_forms!(DependencyKind, "dependency kind", {
    Hard => "hard",
    Soft => "soft",
    Optional => "optional",
});

/// One edge: `task` depends on `on`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The dependent task.
    pub task: String,
    /// The task it depends on.
    pub on: String,
    /// The kind.
    pub kind: DependencyKind,
    /// The dependency's status, as the caller may see it (`None` if hidden from it).
    pub on_status: Option<TaskStatus>,
}

/// Filters of `list_tasks`.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Swarm (default: the agent's own).
    pub swarm: Option<SwarmId>,
    /// Status.
    pub status: Option<TaskStatus>,
    /// Assigned to this agent.
    pub assignee: Option<AgentId>,
    /// Of this type.
    pub task_type: Option<String>,
    /// Children of this task.
    pub parent: Option<String>,
    /// Only pending tasks whose hard dependencies are all completed.
    pub ready_only: bool,
    /// Most tasks returned (1-1000, default 100).
    pub limit: Option<usize>,
}

/// Changes to a task's description; `None` fields stay.
#[derive(Clone, Debug, Default)]
pub struct TaskChanges {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Priority 1-10.
    pub priority: Option<u8>,
    /// Deadline.
    pub deadline: Option<Timestamp>,
    /// Metadata (replacing).
    pub metadata: Option<serde_json::Value>,
    /// Requirements (replacing).
    pub requirements: Option<Vec<String>>,
    /// Estimated hours.
    pub estimated_hours: Option<f64>,
}

const TASK_COLUMNS: &str = "t.id, t.swarm_id, t.parent_id, t.title, t.description, t.type, t.priority, t.status, \
    t.acl_level, t.owner_id, t.team_id, t.assignee_agent_id, t.assignee_team_id, t.progress, t.requirements, \
    t.metadata, t.result, t.lease_holder, t.lease_expires_at, t.fencing_token, t.deadline_at, t.estimated_hours, \
    t.actual_hours, t.created_at, t.updated_at, t.started_at, t.completed_at";

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Task>> {
    let get_s = |i: usize| r.get::<_, String>(i);
    let get_o = |i: usize| r.get::<_, Option<String>>(i);
    let (id, swarm, parent, title, description, task_type) =
        (get_s(0)?, get_s(1)?, get_o(2)?, get_s(3)?, get_s(4)?, get_s(5)?);
    let priority: i64 = r.get(6)?;
    let status = get_s(7)?;
    let level: i64 = r.get(8)?;
    let (owner, team, assignee, assignee_team) = (get_o(9)?, get_o(10)?, get_o(11)?, get_o(12)?);
    let progress: i64 = r.get(13)?;
    let (requirements, metadata, result) = (get_s(14)?, get_s(15)?, get_o(16)?);
    let (holder, lease_at): (Option<String>, Option<i64>) = (r.get(17)?, r.get(18)?);
    let token: i64 = r.get(19)?;
    let deadline: Option<i64> = r.get(20)?;
    let (est, act): (Option<f64>, Option<f64>) = (r.get(21)?, r.get(22)?);
    let (created, updated, started, completed): (i64, i64, Option<i64>, Option<i64>) =
        (r.get(23)?, r.get(24)?, r.get(25)?, r.get(26)?);
    Ok((|| {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("task {id}: {what}: {e}"))
        };
        let scope = Scope::parse(owner.as_deref(), team.as_deref(), level)?;
        let agent =
            |s: Option<String>| s.map(AgentId::new).transpose().map_err(|e| bad("agent", &e));
        Ok(Task {
            swarm: SwarmId::new(&swarm).map_err(|e| bad("swarm", &e))?,
            parent,
            title,
            description,
            task_type,
            priority: u8::try_from(priority).unwrap_or(5),
            status: TaskStatus::from_stored(&status)?,
            level: scope.level,
            owner: scope.owner,
            team: scope.team,
            assignee: agent(assignee)?,
            assignee_team: assignee_team
                .map(TeamId::new)
                .transpose()
                .map_err(|e| bad("team", &e))?,
            progress: u8::try_from(progress).unwrap_or(0),
            requirements: serde_json::from_str(&requirements)
                .map_err(|e| bad("requirements", &e))?,
            metadata: serde_json::from_str(&metadata).map_err(|e| bad("metadata", &e))?,
            result: result
                .map(|r| serde_json::from_str(&r))
                .transpose()
                .map_err(|e| bad("result", &e))?,
            lease: match (agent(holder)?, lease_at) {
                (Some(holder), Some(at)) => {
                    Some(Lease { holder, expires_at: Timestamp::from_millis(at) })
                }
                _ => None,
            },
            fencing_token: u64_of(token),
            deadline: deadline.map(Timestamp::from_millis),
            estimated_hours: est,
            actual_hours: act,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
            started_at: started.map(Timestamp::from_millis),
            completed_at: completed.map(Timestamp::from_millis),
            id,
        })
    })())
}

impl Task {
    fn scope(&self) -> Scope {
        Scope { owner: self.owner.clone(), team: self.team.clone(), level: self.level }
    }

    /// Whether the lease is held and live at `now`.
    pub fn lease_live(&self, now: Timestamp) -> bool {
        self.status.leased() && self.lease.as_ref().is_some_and(|l| now < l.expires_at)
    }
}

/// Reads a task inside a write transaction (no ACL: the caller decides).
fn load(conn: &Connection, id: &str) -> Result<Option<Task>> {
    conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks AS t WHERE t.id = ?1"))?
        .query_row([id], task_from_row)
        .optional()?
        .transpose()
}

/// The hard dependencies of `id` that are not completed.
fn waiting_on(conn: &Connection, id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.dependency_id FROM dependencies d JOIN tasks dt ON dt.id = d.dependency_id \
         WHERE d.dependent_type = 'task' AND d.dependent_id = ?1 AND d.dependency_type = 'task' \
         AND d.kind = 'hard' AND dt.status <> 'completed' ORDER BY d.dependency_id",
    )?;
    let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How a message names a task the caller cannot read.
const HIDDEN: &str = "<hidden>";

/// Whether `p` may read task `id` (an absent task is not readable).
fn readable(conn: &Connection, p: &Principal, id: &str, now: Timestamp) -> Result<bool> {
    Ok(load(conn, id)?
        .is_some_and(|t| allowed(p, Action::Read, RESOURCE, &t.scope(), &t.swarm, now)))
}

/// The tasks `ids` as `p` may learn of them: the ids it can read, in order, then
/// [`HIDDEN`] once if there are others (so a refusal tells neither their ids nor how many).
fn shown_ids(
    conn: &Connection,
    p: &Principal,
    ids: Vec<String>,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(ids.len());
    let mut any_hidden = false;
    for id in ids {
        if readable(conn, p, &id, now)? {
            out.push(id);
        } else {
            any_hidden = true;
        }
    }
    if any_hidden {
        out.push(HIDDEN.to_owned());
    }
    Ok(out)
}

/// A cycle as `p` may learn of it: every run of tasks it cannot read becomes one
/// [`HIDDEN`], so neither their ids nor the links between them are told.
fn shown_cycle(
    conn: &Connection,
    p: &Principal,
    cycle: Vec<String>,
    now: Timestamp,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(cycle.len());
    for id in cycle {
        if readable(conn, p, &id, now)? {
            out.push(id);
        } else if out.last().is_none_or(|last| last != HIDDEN) {
            out.push(HIDDEN.to_owned());
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> Result<i64> {
    let ms = i64::try_from(d.as_millis()).map_err(|_| StoreError::invalid("lease too long"))?;
    if !(1..=7 * 24 * 3600 * 1000).contains(&ms) {
        return Err(StoreError::invalid("a lease lasts from 1 ms to 7 days"));
    }
    Ok(ms)
}

/// What a lease-holding operation needs: the task, visible and writable, with the caller
/// holding its live lease under `token` (or the caller an administrator passing `None`).
fn held(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    id: &str,
    token: Option<u64>,
    action: &'static str,
    now: Timestamp,
) -> Result<std::result::Result<Task, StoreError>> {
    let Some(task) = visible_writable(ctx, p, id, action, now)? else {
        return Ok(Err(StoreError::NotFound(format!("task {id}"))));
    };
    let task = match task {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let admin = allowed(p, Action::Admin, RESOURCE, &task.scope(), &task.swarm, now);
    match token {
        None if admin => Ok(Ok(task)),
        None => Ok(Err(StoreError::invalid(format!(
            "task {id}: this operation needs the fencing token of your claim"
        )))),
        Some(t) => {
            let mine = p
                .as_agent()
                .is_some_and(|a| task.lease.as_ref().is_some_and(|l| &l.holder == a.id()));
            if !task.status.leased() || !mine {
                return Ok(Err(StoreError::Conflict {
                    key: format!("task {id}"),
                    expected: "a claim held by you".into(),
                    found: match &task.lease {
                        Some(l) if task.status.leased() => {
                            format!("claimed by {} until {}", l.holder, l.expires_at.rfc3339())
                        }
                        _ => task.status.as_str().to_owned(),
                    },
                }));
            }
            if t != task.fencing_token {
                return Ok(Err(StoreError::Conflict {
                    key: format!("task {id}"),
                    expected: format!("fencing token {t}"),
                    found: format!("fencing token {} (a newer claim)", task.fencing_token),
                }));
            }
            if !task.lease_live(now) {
                return Ok(Err(StoreError::Conflict {
                    key: format!("task {id}"),
                    expected: "a live lease".into(),
                    found: "the lease expired: claim the task again".into(),
                }));
            }
            Ok(Ok(task))
        }
    }
}

/// The task if it exists and `p` can see it: `Ok(Err)` when it is visible but `p` may
/// not write it (audited), `None` when absent or invisible.
fn visible_writable(
    ctx: &mut WriteCtx<'_>,
    p: &Principal,
    id: &str,
    action: &'static str,
    now: Timestamp,
) -> Result<Option<std::result::Result<Task, StoreError>>> {
    let Some(task) = load(ctx.conn(), id)? else { return Ok(None) };
    let scope = task.scope();
    if !allowed(p, Action::Read, RESOURCE, &scope, &task.swarm, now) {
        // Absent to the caller, but audited as a denial like any access to a hidden
        // record (SPEC section 3); the caller's NotFound commits this row.
        let why = serde_json::json!({ "reason": "not visible to the principal" });
        audit(ctx, p, action, "task", id, &task.swarm, Outcome::Denied, why, now)?;
        return Ok(None);
    }
    if !allowed(p, Action::Write, RESOURCE, &scope, &task.swarm, now) || !own_swarm(p, &task.swarm)
    {
        let e =
            deny(ctx, p, action, "task", id, &task.swarm, "no write permission on this task", now)?;
        return Ok(Some(Err(e)));
    }
    Ok(Some(Ok(task)))
}

const SET_STATUS: &str = "UPDATE tasks SET status = ?2, lease_holder = ?3, lease_expires_at = ?4, fencing_token = ?5, \
    progress = ?6, result = ?7, actual_hours = ?8, started_at = ?9, completed_at = ?10, updated_at = ?11 WHERE id = ?1";

/// Writes the lifecycle columns of a task (and stamps it, so the task handed back to the
/// caller says what was stored rather than the time of the previous change).
fn save_lifecycle(ctx: &WriteCtx<'_>, t: &mut Task, now: Timestamp) -> Result<()> {
    t.updated_at = now;
    let result = t
        .result
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::invalid(e.to_string()))?;
    ctx.conn().prepare_cached(SET_STATUS)?.execute(rusqlite::params![
        t.id,
        t.status.as_str(),
        t.lease.as_ref().map(|l| l.holder.as_str()),
        t.lease.as_ref().map(|l| l.expires_at.as_millis()),
        i64_of(t.fencing_token),
        i64::from(t.progress),
        result,
        t.actual_hours,
        t.started_at.map(Timestamp::as_millis),
        t.completed_at.map(Timestamp::as_millis),
        now.as_millis(),
    ])?;
    Ok(())
}

fn transition(t: &mut Task, to: TaskStatus, now: Timestamp) -> std::result::Result<(), StoreError> {
    if !t.status.can_become(to) {
        return Err(StoreError::invalid(format!(
            "task {} cannot go from {} to {}",
            t.id,
            t.status.as_str(),
            to.as_str()
        )));
    }
    t.status = to;
    if !to.leased() {
        t.lease = None;
    }
    if matches!(to, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled) {
        t.completed_at = Some(now);
    }
    if to == TaskStatus::Pending {
        t.completed_at = None;
    }
    Ok(())
}

impl Store {
    /// Creates a task in the caller's swarm (swarm level by default).
    pub fn create_task(&self, who: &Identity, spec: TaskSpec) -> Result<Task> {
        check_text("title", &spec.title, 512, false)?;
        check_text("description", &spec.description, 64 * 1024, true)?;
        check_text("type", &spec.task_type, 128, false)?;
        if !(1..=10).contains(&spec.priority) {
            return Err(StoreError::invalid("priority must be 1-10"));
        }
        if let Some(id) = &spec.id {
            check_id("task", id)?;
        }
        if spec.estimated_hours.is_some_and(|h| !h.is_finite() || h < 0.0) {
            return Err(StoreError::invalid("estimated hours must be a non-negative number"));
        }
        let metadata = json_object("metadata", &spec.metadata, 64 * 1024)?;
        for r in &spec.requirements {
            check_text("requirement", r, 1024, false)?;
        }
        let requirements = serde_json::to_string(&spec.requirements)
            .map_err(|e| StoreError::invalid(e.to_string()))?;
        let id = spec.id.clone().unwrap_or_else(|| new_id("task"));
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let swarm = match (p.as_agent(), &spec.swarm) {
                    (Some(a), Some(s)) if s != a.swarm() => {
                        return Ok(Err(StoreError::PermissionDenied("agents create tasks only in their own swarm".into())));
                    }
                    (Some(a), _) => a.swarm().clone(),
                    (None, Some(s)) => s.clone(),
                    (None, None) => return Ok(Err(StoreError::invalid("the system principal must name the task's swarm"))),
                };
                let scope = new_scope(p, spec.level, spec.team.as_ref(), AclLevel::Swarm)?;
                if !allowed(p, Action::Write, RESOURCE, &scope, &swarm, now) {
                    return Ok(Err(deny(ctx, p, "task.create", "task", &id, &swarm, "no write permission at this level", now)?));
                }
                if let Some(parent) = &spec.parent {
                    let visible = load(ctx.conn(), parent)?
                        .filter(|t| allowed(p, Action::Read, RESOURCE, &t.scope(), &t.swarm, now));
                    if visible.is_none() {
                        return Ok(Err(StoreError::NotFound(format!("parent task {parent}"))));
                    }
                }
                if load(ctx.conn(), &id)?.is_some() {
                    return Ok(Err(super::id_taken(ctx, p, "task.create", "task", &id, &swarm, now)?));
                }
                ctx.conn()
                    .prepare_cached(
                        "INSERT INTO tasks (id, swarm_id, parent_id, title, description, type, priority, acl_level, \
                         owner_id, team_id, requirements, metadata, deadline_at, estimated_hours, created_at, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)",
                    )?
                    .execute(rusqlite::params![
                        id,
                        swarm.as_str(),
                        spec.parent,
                        spec.title,
                        spec.description,
                        spec.task_type,
                        spec.priority,
                        scope.level.as_u8(),
                        scope.owner.as_ref().map(AgentId::as_str),
                        scope.team.as_ref().map(TeamId::as_str),
                        requirements,
                        metadata,
                        spec.deadline.map(Timestamp::as_millis),
                        spec.estimated_hours,
                        now.as_millis(),
                    ])?;
                let detail = serde_json::json!({ "title": spec.title, "priority": spec.priority, "level": scope.level });
                audit(ctx, p, "task.create", "task", &id, &swarm, Outcome::Ok, detail, now)?;
                // Read back in the same transaction, not through the creator's ACL: a
                // creator who may write but not read this level got an error for a task
                // that was created.
                let task = load(ctx.conn(), &id)?
                    .ok_or_else(|| StoreError::Corrupt("task vanished after creation".into()))?;
                Ok(Ok(task))
            })
            .and_then(|r| r)
    }

    /// A task, if it exists and `who` can see it.
    pub fn get_task(&self, who: &Identity, id: &str) -> Result<Option<Task>> {
        let now = self.now();
        self.shared.read_snapshot_as(who, |conn, p| {
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 2);
            let sql =
                format!("SELECT {TASK_COLUMNS} FROM tasks AS t WHERE t.id = ?1 AND {}", pred.sql());
            let mut binds = vec![Bind::Text(id)];
            push_pred(&mut binds, &pred);
            conn.prepare_cached(&sql)?
                .query_row(params_from_iter(binds), task_from_row)
                .optional()?
                .transpose()
        })
    }

    /// Tasks `who` can see, by priority (highest first) then age.
    pub fn list_tasks(&self, who: &Identity, filter: &TaskFilter) -> Result<Vec<Task>> {
        let now = self.now();
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        self.shared.read_snapshot_as(who, |conn, p| {
            let swarm = filter.swarm.clone().or_else(|| p.as_agent().map(|a| a.swarm().clone()));
            let status = if filter.ready_only { Some(TaskStatus::Pending) } else { filter.status };
            let mut sql = format!(
                "SELECT {TASK_COLUMNS} FROM tasks AS t WHERE (?1 IS NULL OR t.swarm_id = ?1) AND (?2 IS NULL OR t.status = ?2) \
                 AND (?3 IS NULL OR t.assignee_agent_id = ?3) AND (?4 IS NULL OR t.type = ?4) AND (?5 IS NULL OR t.parent_id = ?5)"
            );
            if filter.ready_only {
                sql.push_str(
                    " AND NOT EXISTS (SELECT 1 FROM dependencies d JOIN tasks dt ON dt.id = d.dependency_id \
                     WHERE d.dependent_type = 'task' AND d.dependent_id = t.id AND d.dependency_type = 'task' \
                     AND d.kind = 'hard' AND dt.status <> 'completed')",
                );
            }
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 7);
            sql.push_str(&format!(" AND {} ORDER BY t.priority DESC, t.created_at, t.id LIMIT ?6", pred.sql()));
            let mut binds = vec![
                Bind::OptText(swarm.as_ref().map(SwarmId::as_str)),
                Bind::OptText(status.map(TaskStatus::as_str)),
                Bind::OptText(filter.assignee.as_ref().map(AgentId::as_str)),
                Bind::OptText(filter.task_type.as_deref()),
                Bind::OptText(filter.parent.as_deref()),
                Bind::Int(i64::try_from(limit).unwrap_or(1000)),
            ];
            push_pred(&mut binds, &pred);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), task_from_row)?;
            rows.map(|r| r?).collect()
        })
    }

    /// Pending tasks whose hard dependencies are all completed, that `who` can see.
    pub fn ready_tasks(&self, who: &Identity, limit: usize) -> Result<Vec<Task>> {
        self.list_tasks(
            who,
            &TaskFilter { ready_only: true, limit: Some(limit), ..TaskFilter::default() },
        )
    }

    /// Changes a task's title, description, priority, deadline, metadata or requirements.
    pub fn update_task(&self, who: &Identity, id: &str, changes: TaskChanges) -> Result<Task> {
        if let Some(t) = &changes.title {
            check_text("title", t, 512, false)?;
        }
        if let Some(d) = &changes.description {
            check_text("description", d, 64 * 1024, true)?;
        }
        if changes.priority.is_some_and(|p| !(1..=10).contains(&p)) {
            return Err(StoreError::invalid("priority must be 1-10"));
        }
        // The same checks as at creation: without them a negative number reached the
        // table's CHECK constraint as a database error, and NaN was silently dropped.
        if changes.estimated_hours.is_some_and(|h| !h.is_finite() || h < 0.0) {
            return Err(StoreError::invalid("estimated hours must be a non-negative number"));
        }
        for r in changes.requirements.iter().flatten() {
            check_text("requirement", r, 1024, false)?;
        }
        let metadata =
            changes.metadata.as_ref().map(|m| json_object("metadata", m, 64 * 1024)).transpose()?;
        let requirements = changes
            .requirements
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::invalid(e.to_string()))?;
        let tid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let task = match visible_writable(ctx, p, &tid, "task.update", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                ctx.conn()
                    .prepare_cached(
                        "UPDATE tasks SET title = coalesce(?2, title), description = coalesce(?3, description), \
                         priority = coalesce(?4, priority), deadline_at = coalesce(?5, deadline_at), \
                         metadata = coalesce(?6, metadata), requirements = coalesce(?7, requirements), \
                         estimated_hours = coalesce(?8, estimated_hours), updated_at = ?9 WHERE id = ?1",
                    )?
                    .execute(rusqlite::params![
                        tid,
                        changes.title,
                        changes.description,
                        changes.priority,
                        changes.deadline.map(Timestamp::as_millis),
                        metadata,
                        requirements,
                        changes.estimated_hours,
                        now.as_millis()
                    ])?;
                audit(ctx, p, "task.update", "task", &tid, &task.swarm, Outcome::Ok, serde_json::json!({}), now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_task(who, id)?.ok_or_else(|| StoreError::NotFound(format!("task {id}")))
    }

    /// Assigns a task to an agent or a team (or nobody). Only they may then claim it.
    pub fn assign_task(&self, who: &Identity, id: &str, to: Assignee) -> Result<Task> {
        let tid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let task = match visible_writable(ctx, p, &tid, "task.assign", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                let (agent, team) = match &to {
                    Assignee::Nobody => (None, None),
                    Assignee::Agent(a) => {
                        let swarm: Option<String> = ctx
                            .conn()
                            .prepare_cached("SELECT swarm_id FROM agents WHERE id = ?1 AND status = 'active'")?
                            .query_row([a.as_str()], |r| r.get(0))
                            .optional()?;
                        if swarm.as_deref() != Some(task.swarm.as_str()) {
                            return Ok(Err(StoreError::NotFound(format!("active agent {a} in swarm {}", task.swarm))));
                        }
                        (Some(a.as_str().to_owned()), None)
                    }
                    Assignee::Team(t) => {
                        let swarm: Option<String> = ctx
                            .conn()
                            .prepare_cached("SELECT swarm_id FROM teams WHERE id = ?1")?
                            .query_row([t.as_str()], |r| r.get(0))
                            .optional()?;
                        if swarm.as_deref() != Some(task.swarm.as_str()) {
                            return Ok(Err(StoreError::NotFound(format!("team {t} in swarm {}", task.swarm))));
                        }
                        (None, Some(t.as_str().to_owned()))
                    }
                };
                ctx.conn()
                    .prepare_cached("UPDATE tasks SET assignee_agent_id = ?2, assignee_team_id = ?3, updated_at = ?4 WHERE id = ?1")?
                    .execute(rusqlite::params![tid, agent, team, now.as_millis()])?;
                let detail = serde_json::json!({ "agent": agent, "team": team });
                audit(ctx, p, "task.assign", "task", &tid, &task.swarm, Outcome::Ok, detail, now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)?;
        self.get_task(who, id)?.ok_or_else(|| StoreError::NotFound(format!("task {id}")))
    }

    /// Claims a task for `lease`: atomic. The task must be pending (or its previous lease
    /// expired), ready (hard dependencies completed) and, if assigned, assigned to the
    /// caller or the caller's team. The fencing token rises with every claim. A second
    /// claimer gets [`StoreError::Conflict`], recorded as a `concurrent_claim` conflict.
    /// A task that is not ready gets [`StoreError::Blocked`], naming the dependencies it
    /// waits for that the caller can read (and `<hidden>` for any others).
    pub fn claim_task(&self, who: &Identity, id: &str, lease: Duration) -> Result<Claim> {
        let lease_ms = ms(lease)?;
        let tid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let Some(agent) = p.as_agent() else {
                    return Ok(Err(StoreError::invalid("only agents claim tasks")));
                };
                let mut task = match visible_writable(ctx, p, &tid, "task.claim", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                if let Some(a) = &task.assignee
                    && a != agent.id()
                {
                    let why = "the task is assigned to another agent";
                    return Ok(Err(deny(ctx, p, "task.claim", "task", &tid, &task.swarm, why, now)?));
                }
                if let Some(t) = &task.assignee_team
                    && !agent.in_team(t.as_str())
                {
                    let why = "the task is assigned to a team the agent is not in";
                    return Ok(Err(deny(ctx, p, "task.claim", "task", &tid, &task.swarm, why, now)?));
                }
                let takeover = task.status.leased() && !task.lease_live(now);
                if task.lease_live(now) {
                    let holder = task.lease.as_ref().map_or_else(String::new, |l| l.holder.to_string());
                    super::conflicts::record(ctx, &super::conflicts::NewConflict {
                        swarm: task.swarm.clone(),
                        kind: "concurrent_claim",
                        severity: "low",
                        a: ("task".into(), tid.clone()),
                        b: Some(("agent".into(), agent.id().to_string())),
                        description: format!("{} tried to claim task {tid} held by {holder}", agent.id()),
                        detail: serde_json::json!({ "holder": holder, "fencing_token": task.fencing_token }),
                        strategy: "first_write_wins",
                        status: "resolved",
                        scope: task.scope(),
                    }, now)?;
                    audit(ctx, p, "task.claim", "task", &tid, &task.swarm, Outcome::Conflict, serde_json::json!({ "holder": holder }), now)?;
                    // For people: RFC 3339, not Unix milliseconds.
                    let found = match &task.lease {
                        Some(l) => format!("claimed by {holder} until {}", l.expires_at.rfc3339()),
                        None => format!("claimed by {holder}"),
                    };
                    return Ok(Err(StoreError::Conflict {
                        key: format!("task {tid}"),
                        expected: "an unclaimed task".into(),
                        found,
                    }));
                }
                if task.status != TaskStatus::Pending && !takeover {
                    return Ok(Err(StoreError::invalid(format!("task {tid} is {} and cannot be claimed", task.status.as_str()))));
                }
                let waiting = waiting_on(ctx.conn(), &tid)?;
                if !waiting.is_empty() {
                    let waiting = shown_ids(ctx.conn(), p, waiting, now)?;
                    return Ok(Err(StoreError::Blocked(format!("task {tid} waits for {}", waiting.join(", ")))));
                }
                task.status = TaskStatus::Claimed;
                task.fencing_token += 1;
                let expires_at = now.plus_millis(lease_ms);
                task.lease = Some(Lease { holder: agent.id().clone(), expires_at });
                task.started_at = task.started_at.or(Some(now));
                save_lifecycle(ctx, &mut task, now)?;
                let detail = serde_json::json!({ "fencing_token": task.fencing_token, "lease_ms": lease_ms, "takeover": takeover });
                audit(ctx, p, "task.claim", "task", &tid, &task.swarm, Outcome::Ok, detail, now)?;
                let token = task.fencing_token;
                Ok(Ok(Claim { task, token, expires_at }))
            })
            .and_then(|r| r)
    }

    /// Extends a live lease; needs the current fencing token.
    pub fn renew_lease(
        &self,
        who: &Identity,
        id: &str,
        token: u64,
        lease: Duration,
    ) -> Result<Claim> {
        let lease_ms = ms(lease)?;
        self.lifecycle(who, id, Some(token), "task.renew", move |task, now| {
            let expires_at = now.plus_millis(lease_ms);
            if let Some(l) = &mut task.lease {
                l.expires_at = expires_at;
            }
            Ok(())
        })
        .map(|task| {
            let expires_at =
                task.lease.as_ref().map_or(Timestamp::from_millis(0), |l| l.expires_at);
            Claim { token: task.fencing_token, expires_at, task }
        })
    }

    /// Reports progress (0-100) under the lease; the task becomes in progress.
    pub fn report_progress(
        &self,
        who: &Identity,
        id: &str,
        token: u64,
        progress: u8,
    ) -> Result<Task> {
        if progress > 100 {
            return Err(StoreError::invalid("progress must be 0-100"));
        }
        self.lifecycle(who, id, Some(token), "task.progress", move |task, now| {
            if task.status != TaskStatus::InProgress {
                transition(task, TaskStatus::InProgress, now)?;
            }
            task.progress = progress;
            Ok(())
        })
    }

    /// Gives the claim back: the task is pending again for anyone.
    pub fn release_task(&self, who: &Identity, id: &str, token: u64) -> Result<Task> {
        self.lifecycle(who, id, Some(token), "task.release", |task, now| {
            transition(task, TaskStatus::Pending, now)
        })
    }

    /// Completes the task under the lease and reports which tasks became ready.
    pub fn complete_task(
        &self,
        who: &Identity,
        id: &str,
        token: Option<u64>,
        result: Option<serde_json::Value>,
        actual_hours: Option<f64>,
    ) -> Result<Completion> {
        if actual_hours.is_some_and(|h| !h.is_finite() || h < 0.0) {
            return Err(StoreError::invalid("actual hours must be a non-negative number"));
        }
        if let Some(r) = &result
            && serde_json::to_string(r).map(|s| s.len()).unwrap_or(usize::MAX) > 256 * 1024
        {
            return Err(StoreError::invalid("a task result is at most 256 KiB"));
        }
        let task = self.lifecycle(who, id, token, "task.complete", move |task, now| {
            transition(task, TaskStatus::Completed, now)?;
            task.progress = 100;
            task.result = result;
            task.actual_hours = actual_hours;
            Ok(())
        })?;
        // Tasks with a hard dependency on this one that are now ready, among those the
        // caller can see.
        let dependents: Vec<String> = self.shared.read_snapshot_as(who, |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT dependent_id FROM dependencies WHERE dependency_type = 'task' AND dependency_id = ?1 \
                 AND dependent_type = 'task' AND kind = 'hard'",
            )?;
            let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        let ready_ids: std::collections::HashSet<String> = if dependents.is_empty() {
            Default::default()
        } else {
            self.ready_tasks(who, 1000)?.into_iter().map(|t| t.id).collect()
        };
        let ready = dependents.into_iter().filter(|d| ready_ids.contains(d)).collect();
        Ok(Completion { task, ready })
    }

    /// Fails the task under the lease, recording why.
    pub fn fail_task(
        &self,
        who: &Identity,
        id: &str,
        token: Option<u64>,
        reason: &str,
    ) -> Result<Task> {
        check_text("reason", reason, 4096, false)?;
        let reason = reason.to_owned();
        self.lifecycle(who, id, token, "task.fail", move |task, now| {
            transition(task, TaskStatus::Failed, now)?;
            task.result = Some(serde_json::json!({ "error": reason }));
            Ok(())
        })
    }

    /// Moves a task to another status where the table of [`TaskStatus::can_become`]
    /// allows it: block, unblock (pending), retry a failed task (pending), cancel. A task
    /// under someone's live lease can be changed only with its token or by an
    /// administrator.
    pub fn set_task_status(
        &self,
        who: &Identity,
        id: &str,
        to: TaskStatus,
        token: Option<u64>,
    ) -> Result<Task> {
        if matches!(to, TaskStatus::Claimed | TaskStatus::InProgress | TaskStatus::Completed) {
            return Err(StoreError::invalid(format!(
                "use claim, progress or complete to make a task {}",
                to.as_str()
            )));
        }
        let tid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let mut task = match visible_writable(ctx, p, &tid, "task.status", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                if task.lease_live(now) {
                    task = match held(ctx, p, &tid, token, "task.status", now)? {
                        Ok(t) => t,
                        Err(e) => return Ok(Err(e)),
                    };
                }
                let from = task.status;
                if let Err(e) = transition(&mut task, to, now) {
                    return Ok(Err(e));
                }
                if to == TaskStatus::Pending {
                    task.progress = 0;
                }
                save_lifecycle(ctx, &mut task, now)?;
                let detail = serde_json::json!({ "from": from.as_str(), "to": to.as_str() });
                audit(ctx, p, "task.status", "task", &tid, &task.swarm, Outcome::Ok, detail, now)?;
                Ok(Ok(task))
            })
            .and_then(|r| r)
    }

    /// Runs a lease-holding change: load, check the lease and token, apply `f`, save.
    fn lifecycle(
        &self,
        who: &Identity,
        id: &str,
        token: Option<u64>,
        action: &'static str,
        f: impl FnOnce(&mut Task, Timestamp) -> std::result::Result<(), StoreError> + Send + 'static,
    ) -> Result<Task> {
        let tid = id.to_owned();
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let mut task = match held(ctx, p, &tid, token, action, now)? {
                    Ok(t) => t,
                    Err(e) => {
                        if matches!(e, StoreError::Conflict { .. })
                            && let Some(t) = load(ctx.conn(), &tid)?
                        {
                            let detail = serde_json::json!({ "error": e.to_string() });
                            audit(ctx, p, action, "task", &tid, &t.swarm, Outcome::Conflict, detail, now)?;
                        }
                        return Ok(Err(e));
                    }
                };
                let from = task.status;
                if let Err(e) = f(&mut task, now) {
                    return Ok(Err(e));
                }
                save_lifecycle(ctx, &mut task, now)?;
                let detail = serde_json::json!({ "from": from.as_str(), "to": task.status.as_str(), "fencing_token": task.fencing_token });
                audit(ctx, p, action, "task", &tid, &task.swarm, Outcome::Ok, detail, now)?;
                Ok(Ok(task))
            })
            .and_then(|r| r)
    }

    /// Makes task `task` depend on task `on`. Refuses an edge that would close a cycle,
    /// naming the cycle (a run of tasks the caller cannot read shows as `<hidden>`). Needs
    /// write permission on `task` and read permission on `on`.
    pub fn add_dependency(
        &self,
        who: &Identity,
        task: &str,
        on: &str,
        kind: DependencyKind,
    ) -> Result<()> {
        let (tid, oid) = (task.to_owned(), on.to_owned());
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let dependent = match visible_writable(ctx, p, &tid, "task.depend", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                let dependency = load(ctx.conn(), &oid)?
                    .filter(|t| allowed(p, Action::Read, RESOURCE, &t.scope(), &t.swarm, now));
                let Some(dependency) = dependency else {
                    return Ok(Err(StoreError::NotFound(format!("task {oid}"))));
                };
                if dependency.swarm != dependent.swarm {
                    return Ok(Err(StoreError::invalid("a task can depend only on tasks of its own swarm")));
                }
                if let Some(cycle) = find_cycle(ctx.conn(), &tid, &oid)? {
                    // The cycle may run through tasks the caller cannot see: it is refused
                    // all the same, but neither the message nor the conflict record (which
                    // others may read) names them.
                    let cycle = shown_cycle(ctx.conn(), p, cycle, now)?;
                    super::conflicts::record(ctx, &super::conflicts::NewConflict {
                        swarm: dependent.swarm.clone(),
                        kind: "dependency_clash",
                        severity: "medium",
                        a: ("task".into(), tid.clone()),
                        b: Some(("task".into(), oid.clone())),
                        description: format!("dependency would close the cycle {}", cycle.join(" -> ")),
                        detail: serde_json::json!({ "cycle": cycle }),
                        strategy: "first_write_wins",
                        status: "resolved",
                        scope: dependent.scope(),
                    }, now)?;
                    return Ok(Err(StoreError::invalid(format!("dependency refused: it would close the cycle {}", cycle.join(" -> ")))));
                }
                ctx.conn()
                    .prepare_cached(
                        "INSERT INTO dependencies (swarm_id, dependent_type, dependent_id, dependency_type, dependency_id, kind, \
                         created_by, created_at) VALUES (?1, 'task', ?2, 'task', ?3, ?4, ?5, ?6) \
                         ON CONFLICT (dependent_type, dependent_id, dependency_type, dependency_id) DO UPDATE SET kind = excluded.kind",
                    )?
                    .execute(rusqlite::params![dependent.swarm.as_str(), tid, oid, kind.as_str(), p.audit_name(), now.as_millis()])?;
                let detail = serde_json::json!({ "on": oid, "kind": kind.as_str() });
                audit(ctx, p, "task.depend", "task", &tid, &dependent.swarm, Outcome::Ok, detail, now)?;
                Ok(Ok(()))
            })
            .and_then(|r| r)
    }

    /// Removes the edge `task` -> `on`; returns whether there was one.
    pub fn remove_dependency(&self, who: &Identity, task: &str, on: &str) -> Result<bool> {
        let (tid, oid) = (task.to_owned(), on.to_owned());
        self.shared
            .write_as(who, move |ctx, shared, p| {
                let now = shared.now();
                let dependent = match visible_writable(ctx, p, &tid, "task.undepend", now)? {
                    None => return Ok(Err(StoreError::NotFound(format!("task {tid}")))),
                    Some(Err(e)) => return Ok(Err(e)),
                    Some(Ok(t)) => t,
                };
                let n = ctx
                    .conn()
                    .prepare_cached(
                        "DELETE FROM dependencies WHERE dependent_type = 'task' AND dependent_id = ?1 \
                         AND dependency_type = 'task' AND dependency_id = ?2",
                    )?
                    .execute([&tid, &oid])?;
                if n > 0 {
                    let detail = serde_json::json!({ "on": oid });
                    audit(ctx, p, "task.undepend", "task", &tid, &dependent.swarm, Outcome::Ok, detail, now)?;
                }
                Ok(Ok(n > 0))
            })
            .and_then(|r| r)
    }

    /// The dependencies of a task (what it waits on), with their status where visible.
    pub fn task_dependencies(&self, who: &Identity, id: &str) -> Result<Vec<Dependency>> {
        let now = self.now();
        if self.get_task(who, id)?.is_none() {
            return Err(StoreError::NotFound(format!("task {id}")));
        }
        self.shared.read_snapshot_as(who, |conn, p| {
            let pred = sql_predicate(p, Action::Read, RESOURCE, COLS, now, 2);
            let sql = format!(
                "SELECT d.dependency_id, d.kind, CASE WHEN {} THEN t.status END FROM dependencies d \
                 LEFT JOIN tasks AS t ON t.id = d.dependency_id \
                 WHERE d.dependent_type = 'task' AND d.dependent_id = ?1 AND d.dependency_type = 'task' ORDER BY d.dependency_id",
                pred.sql()
            );
            let mut binds = vec![Bind::Text(id)];
            push_pred(&mut binds, &pred);
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(binds), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (on, kind, status) = row?;
                out.push(Dependency {
                    task: id.to_owned(),
                    on,
                    kind: DependencyKind::from_stored(&kind)?,
                    on_status: status.map(|s| TaskStatus::from_stored(&s)).transpose()?,
                });
            }
            Ok(out)
        })
    }
}

/// If adding `task -> on` closes a cycle, the cycle as a list of task ids starting and
/// ending with `task`. Follows every kind of edge: a cycle of soft edges is as impossible
/// to order as one of hard edges.
fn find_cycle(conn: &Connection, task: &str, on: &str) -> Result<Option<Vec<String>>> {
    if task == on {
        return Ok(Some(vec![task.to_owned(), task.to_owned()]));
    }
    // Breadth-first from `on` along dependency edges, remembering each node's parent.
    let mut parent: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([on.to_owned()]);
    let mut stmt = conn.prepare_cached(
        "SELECT dependency_id FROM dependencies WHERE dependent_type = 'task' AND dependent_id = ?1 AND dependency_type = 'task'",
    )?;
    let mut seen = 0usize;
    while let Some(node) = queue.pop_front() {
        seen += 1;
        if seen > 100_000 {
            return Err(StoreError::invalid("dependency graph too large to check for cycles"));
        }
        let next: Vec<String> =
            stmt.query_map([&node], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<_>>()?;
        for n in next {
            if n == task {
                // Walk back from `node` to `on`.
                let mut path = vec![node.clone()];
                let mut cur = node.clone();
                while let Some(p) = parent.get(&cur) {
                    path.push(p.clone());
                    cur = p.clone();
                }
                path.reverse();
                let mut cycle = vec![task.to_owned()];
                cycle.extend(path);
                cycle.push(task.to_owned());
                return Ok(Some(cycle));
            }
            if n != on && !parent.contains_key(&n) {
                parent.insert(n.clone(), node.clone());
                queue.push_back(n);
            }
        }
    }
    Ok(None)
}

//! `task_create`, `task_list`, `task_update`.

use rmcp::schemars::{self, JsonSchema};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use swarm_memory::{AgentId, Task, TaskFilter, TaskSpec, TaskStatus};

use super::{Ctx, Level, level_name, limit, seconds, team};
use crate::reply::{Outcome, PAGE_BUDGET, Reply, ToolError, clip, json_len};

/// Characters of a description a listing shows.
const LISTED_DESCRIPTION: usize = 200;
/// The lease of a claim when none is asked for, in seconds.
const DEFAULT_LEASE: u64 = 300;

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({})
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateArgs {
    /// What is to be done (1-512 characters).
    title: String,
    /// Details (up to 64 KiB).
    description: Option<String>,
    /// A type of your choosing, such as `review` (default `general`).
    #[serde(rename = "type")]
    task_type: Option<String>,
    /// Priority 1 (lowest) to 10 (highest), default 5.
    priority: Option<u8>,
    /// Who may see and claim it: `private`, `team`, `swarm` (default) or `public`.
    level: Option<Level>,
    /// The team of a team-level task.
    team: Option<String>,
    /// A deadline, this many seconds from now.
    due_in_seconds: Option<u64>,
    /// The id of a parent task.
    parent: Option<String>,
    /// Requirements, as short texts.
    requirements: Option<Vec<String>>,
    /// Free-form metadata (a JSON object).
    #[schemars(schema_with = "any_object")]
    metadata: Option<Json>,
    /// An id of your choosing (default: generated).
    id: Option<String>,
}

pub(crate) fn create(ctx: &Ctx, a: CreateArgs) -> Outcome {
    let mut spec = TaskSpec::new(a.title);
    if let Some(d) = a.description {
        spec = spec.description(d);
    }
    if let Some(t) = a.task_type {
        spec = spec.task_type(t);
    }
    if let Some(p) = a.priority {
        spec = spec.priority(p);
    }
    if let Some(l) = a.level {
        spec = spec.level(l.into());
    }
    if let Some(t) = team(a.team.as_deref())? {
        spec = spec.team(t);
    }
    if let Some(s) = a.due_in_seconds {
        let ms = i64::try_from(seconds("due_in_seconds", s)?.as_millis())
            .map_err(|_| ToolError::invalid("due_in_seconds is too large"))?;
        spec = spec.deadline(ctx.store().now().plus_millis(ms));
    }
    if let Some(p) = a.parent {
        spec = spec.parent(p);
    }
    if let Some(r) = a.requirements {
        spec = spec.requirements(r);
    }
    if let Some(m) = a.metadata {
        spec = spec.metadata(m);
    }
    if let Some(id) = a.id {
        spec = spec.id(id);
    }
    let task = ctx.store().create_task(ctx.who(), spec)?;
    Ok(Reply::new(json!({ "task": task_json(&task, None) })))
}

/// A task for output; `clip_to` shortens the description (listings) and leaves out
/// metadata and result.
pub(crate) fn task_json(t: &Task, clip_to: Option<usize>) -> Json {
    let mut doc = json!({
        "id": t.id,
        "title": t.title,
        "description": clip_to.map_or_else(|| t.description.clone(), |n| clip(&t.description, n)),
        "type": t.task_type,
        "priority": t.priority,
        "status": t.status,
        "level": level_name(t.level),
        "owner": t.owner,
        "team": t.team,
        "assignee": t.assignee,
        "assignee_team": t.assignee_team,
        "progress": t.progress,
        "lease": t.lease.as_ref().map(|l| json!({ "holder": l.holder, "expires_at": l.expires_at })),
        "fencing_token": t.fencing_token,
        "parent": t.parent,
        "deadline": t.deadline,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "completed_at": t.completed_at,
    });
    if clip_to.is_none() {
        doc["requirements"] = json!(t.requirements);
        doc["metadata"] = t.metadata.clone();
        doc["result"] = json!(t.result);
    } else {
        doc["has_result"] = json!(t.result.is_some());
    }
    doc
}

/// A task status, for filters.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Waiting to be claimed.
    Pending,
    /// Claimed, not started.
    Claimed,
    /// Being worked on.
    InProgress,
    /// Held back.
    Blocked,
    /// Done.
    Completed,
    /// Failed.
    Failed,
    /// Given up.
    Cancelled,
}

impl From<Status> for TaskStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => TaskStatus::Pending,
            Status::Claimed => TaskStatus::Claimed,
            Status::InProgress => TaskStatus::InProgress,
            Status::Blocked => TaskStatus::Blocked,
            Status::Completed => TaskStatus::Completed,
            Status::Failed => TaskStatus::Failed,
            Status::Cancelled => TaskStatus::Cancelled,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct ListArgs {
    /// Only pending tasks whose hard dependencies are completed: those that can be claimed
    /// now.
    #[serde(default)]
    ready_only: bool,
    /// Only tasks assigned to this agent id, or `me`.
    assignee: Option<String>,
    /// Only tasks with this status.
    status: Option<Status>,
    /// Only tasks of this type.
    #[serde(rename = "type")]
    task_type: Option<String>,
    /// Most tasks, 1 to 50 (default 20).
    limit: Option<u32>,
}

pub(crate) fn list(ctx: &Ctx, a: ListArgs) -> Outcome {
    let limit = limit(a.limit, 20, 50)?;
    let assignee = match a.assignee.as_deref() {
        None => None,
        Some("me") => ctx.session.agent().cloned(),
        Some(id) => Some(AgentId::new(id).map_err(|e| ToolError::invalid(e.to_string()))?),
    };
    if a.ready_only && a.status.is_some_and(|s| !matches!(s, Status::Pending)) {
        return Err(ToolError::invalid("ready_only lists pending tasks: leave status out"));
    }
    let filter = TaskFilter {
        swarm: None,
        status: a.status.map(Into::into),
        assignee,
        task_type: a.task_type,
        parent: None,
        ready_only: a.ready_only,
        limit: Some(limit),
    };
    let tasks = ctx.store().list_tasks(ctx.who(), &filter)?;
    let mut out = Vec::new();
    let mut used = 0;
    let mut truncated = false;
    for t in &tasks {
        let doc = task_json(t, Some(LISTED_DESCRIPTION));
        let len = json_len(&doc) + 1;
        if !out.is_empty() && used + len > PAGE_BUDGET {
            truncated = true;
            break;
        }
        used += len;
        out.push(doc);
    }
    let mut doc = json!({ "tasks": out, "truncated": truncated });
    if truncated {
        doc["note"] =
            json!("more tasks matched than fit in one answer: narrow the filters or lower limit");
    }
    Ok(Reply::new(doc))
}

/// What `task_update` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum Change {
    /// Take the task under a lease (atomic: one winner); returns the fencing token. On a
    /// task you hold, renews the lease.
    Claim,
    /// Report progress (0-100); the task becomes in progress.
    Progress,
    /// Complete it, with an optional JSON result.
    Complete,
    /// Fail it, with a reason.
    Fail,
    /// Give the claim back: pending again for anyone.
    Release,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateArgs {
    /// The task id.
    id: String,
    /// What to do.
    action: Change,
    /// The fencing token your claim returned (needed by every action but claim).
    fencing_token: Option<u64>,
    /// claim: the lease, in seconds (default 300, at most 7 days).
    lease_seconds: Option<u64>,
    /// progress: percent done, 0-100.
    progress: Option<u8>,
    /// complete: the result (any JSON, at most 256 KiB).
    #[schemars(schema_with = "any_value")]
    result: Option<Json>,
    /// fail: why.
    reason: Option<String>,
    /// complete: hours spent.
    actual_hours: Option<f64>,
}

pub(crate) fn update(ctx: &Ctx, a: UpdateArgs) -> Outcome {
    let store = ctx.store();
    let who = ctx.who();
    let only = |what: &str, given: bool, action: Change| {
        if given && a.action != action {
            Err(ToolError::invalid(format!("{what} is only for action {action:?}").to_lowercase()))
        } else {
            Ok(())
        }
    };
    only("lease_seconds", a.lease_seconds.is_some(), Change::Claim)?;
    only("progress", a.progress.is_some(), Change::Progress)?;
    only("result", a.result.is_some(), Change::Complete)?;
    only("actual_hours", a.actual_hours.is_some(), Change::Complete)?;
    only("reason", a.reason.is_some(), Change::Fail)?;
    let token = || {
        a.fencing_token.ok_or_else(|| {
            ToolError::invalid("pass the fencing_token your claim returned (claim the task first)")
        })
    };
    match a.action {
        Change::Claim => {
            let lease = seconds("lease_seconds", a.lease_seconds.unwrap_or(DEFAULT_LEASE))?;
            let held = store.get_task(who, &a.id)?;
            // Claiming a task this agent holds renews its lease (with its token), so that
            // "claim again to renew" works without a separate tool.
            let mine = held.as_ref().is_some_and(|t| {
                t.lease_live(store.now())
                    && t.lease.as_ref().is_some_and(|l| Some(&l.holder) == ctx.session.agent())
            });
            let claim = match (mine, held) {
                (true, Some(t)) => store.renew_lease(who, &a.id, t.fencing_token, lease)?,
                _ => store.claim_task(who, &a.id, lease)?,
            };
            Ok(Reply::new(json!({
                "task": task_json(&claim.task, None),
                "fencing_token": claim.token,
                "lease_expires_at": claim.expires_at,
            })))
        }
        Change::Progress => {
            let p =
                a.progress.ok_or_else(|| ToolError::invalid("progress needs `progress`, 0-100"))?;
            let t = store.report_progress(who, &a.id, token()?, p)?;
            Ok(Reply::new(json!({ "task": task_json(&t, None) })))
        }
        Change::Complete => {
            let c = store.complete_task(who, &a.id, a.fencing_token, a.result, a.actual_hours)?;
            Ok(Reply::new(json!({ "task": task_json(&c.task, None), "ready": c.ready })))
        }
        Change::Fail => {
            let reason = a.reason.ok_or_else(|| ToolError::invalid("fail needs a `reason`"))?;
            let t = store.fail_task(who, &a.id, a.fencing_token, &reason)?;
            Ok(Reply::new(json!({ "task": task_json(&t, None) })))
        }
        Change::Release => {
            let t = store.release_task(who, &a.id, token()?)?;
            Ok(Reply::new(json!({ "task": task_json(&t, None) })))
        }
    }
}

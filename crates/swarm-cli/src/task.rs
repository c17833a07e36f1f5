//! `task ...`: tasks with dependencies, leases and fencing tokens, as the authenticated
//! agent.
//!
//! A claim is atomic and returns a fencing token; every change made under the claim
//! (`renew`, `progress`, `complete`, `fail`, `release`) presents it with `--fence`, so an
//! agent whose lease lapsed and was taken over cannot overwrite its successor's work
//! (exit 5). A task the agent cannot see reads exactly like an absent one (exit 3).

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value as Json, json};
use swarm_memory::{
    AclLevel, AgentId, Assignee, Claim, Dependency, DependencyKind, Task, TaskChanges, TaskFilter,
    TaskSpec, TaskStatus, TeamId,
};

use crate::exit::{CliError, Result};
use crate::input;
use crate::open::AgentCtx;
use crate::output::{self, Reply, to_json};

/// The default lease of a claim, in seconds.
const DEFAULT_LEASE: &str = "300";
/// The longest lease the store grants: 7 days.
const MAX_LEASE: u64 = 7 * 24 * 3600;

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// Create a task in the agent's swarm (swarm level unless --level)
    Create(CreateArgs),
    /// Show a task and what it depends on
    Show {
        /// The task
        id: String,
    },
    /// List the tasks the agent can see, highest priority first
    List(ListArgs),
    /// Change a task's title, description, priority, deadline, requirements or metadata
    Update(UpdateArgs),
    /// Assign a task to an agent or a team (only they may claim it), or to nobody
    Assign(AssignArgs),
    /// Claim a task under a lease and print its fencing token (exit 5 when already
    /// claimed or still waiting for its dependencies)
    Claim(ClaimArgs),
    /// Extend the lease of a claim
    Renew(RenewArgs),
    /// Report progress (0-100) under the claim; the task becomes in_progress
    Progress(ProgressArgs),
    /// Complete a task and print the tasks that became ready
    Complete(CompleteArgs),
    /// Fail a task, saying why (`retry` makes it pending again)
    Fail(FailArgs),
    /// Give a claim back: the task is pending again
    Release(Fenced),
    /// Hold a task back: not claimable until `unblock`
    Block(MaybeFenced),
    /// Make a blocked task pending again
    Unblock(MaybeFenced),
    /// Give a task up for good
    Cancel(MaybeFenced),
    /// Make a failed task pending again
    Retry(MaybeFenced),
    /// Make a task depend on another (refused when it would close a cycle)
    Depend(DependArgs),
    /// Remove a dependency (exit 3 when there was none)
    Undepend(UndependArgs),
    /// List pending tasks whose hard dependencies are all completed
    Ready {
        /// Print at most this many
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Title
    #[arg(long)]
    title: String,
    /// Description
    #[arg(long, default_value = "")]
    description: String,
    /// Type, such as `review`
    #[arg(long = "type", value_name = "TYPE", default_value = "general")]
    task_type: String,
    /// Priority, 1 (lowest) to 10 (highest)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=10))]
    priority: u8,
    /// ACL level: 1-5 or private, team, swarm, public, system [default: swarm]
    #[arg(long)]
    level: Option<AclLevel>,
    /// The task's team (for team-level tasks)
    #[arg(long)]
    team: Option<TeamId>,
    /// Deadline, this many seconds from now
    #[arg(long, value_name = "SECS")]
    deadline_in: Option<u64>,
    /// Parent task
    #[arg(long, value_name = "ID")]
    parent: Option<String>,
    /// A requirement, free text (repeatable)
    #[arg(long = "requirement", value_name = "R")]
    requirements: Vec<String>,
    /// Metadata: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Estimated hours
    #[arg(long, value_name = "HOURS")]
    estimate: Option<f64>,
    /// Use this id instead of a generated one
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tasks with this status
    #[arg(long, value_parser = input::one_of(TaskStatus::NAMES, TaskStatus::parse))]
    status: Option<TaskStatus>,
    /// Only tasks assigned to this agent
    #[arg(long, value_name = "AGENT")]
    assignee: Option<AgentId>,
    /// Only tasks of this type
    #[arg(long = "type", value_name = "TYPE")]
    task_type: Option<String>,
    /// Only children of this task
    #[arg(long, value_name = "ID")]
    parent: Option<String>,
    /// Only pending tasks whose hard dependencies are all completed
    #[arg(long)]
    ready: bool,
    /// Print at most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    limit: u64,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The task
    id: String,
    /// New title
    #[arg(long)]
    title: Option<String>,
    /// New description
    #[arg(long)]
    description: Option<String>,
    /// New priority, 1-10
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=10))]
    priority: Option<u8>,
    /// New deadline, this many seconds from now
    #[arg(long, value_name = "SECS")]
    deadline_in: Option<u64>,
    /// Requirements, replacing the current ones (repeatable)
    #[arg(long = "requirement", value_name = "R")]
    requirements: Vec<String>,
    /// Metadata, replacing the current one: a JSON object
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// New estimate in hours
    #[arg(long, value_name = "HOURS")]
    estimate: Option<f64>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("assignee").required(true).args(["to", "team", "nobody"])))]
pub(crate) struct AssignArgs {
    /// The task
    id: String,
    /// Assign to this agent (`--agent` names who runs the command)
    #[arg(long, value_name = "AGENT")]
    to: Option<AgentId>,
    /// Assign to this team: any member may claim it
    #[arg(long)]
    team: Option<TeamId>,
    /// Assign to nobody: anyone allowed may claim it
    #[arg(long)]
    nobody: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClaimArgs {
    /// The task
    id: String,
    /// Lease length in seconds
    #[arg(long, value_name = "SECS", default_value = DEFAULT_LEASE,
        value_parser = clap::value_parser!(u64).range(1..=MAX_LEASE))]
    lease: u64,
}

#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    /// The task
    id: String,
    /// The fencing token of the claim (printed by `task claim`)
    #[arg(long, value_name = "N")]
    fence: u64,
    /// New lease length in seconds, from now
    #[arg(long, value_name = "SECS", default_value = DEFAULT_LEASE,
        value_parser = clap::value_parser!(u64).range(1..=MAX_LEASE))]
    lease: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ProgressArgs {
    /// The task
    id: String,
    /// The fencing token of the claim
    #[arg(long, value_name = "N")]
    fence: u64,
    /// Percent done, 0-100
    #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: u8,
}

#[derive(Debug, Args)]
pub(crate) struct CompleteArgs {
    /// The task
    id: String,
    /// The fencing token of the claim (an administrator of the task may omit it)
    #[arg(long, value_name = "N")]
    fence: Option<u64>,
    /// The result: a JSON document
    #[arg(long, value_name = "JSON")]
    result: Option<String>,
    /// Hours actually spent
    #[arg(long, value_name = "H")]
    hours: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct FailArgs {
    /// The task
    id: String,
    /// The fencing token of the claim (an administrator of the task may omit it)
    #[arg(long, value_name = "N")]
    fence: Option<u64>,
    /// Why it failed
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub(crate) struct Fenced {
    /// The task
    id: String,
    /// The fencing token of the claim
    #[arg(long, value_name = "N")]
    fence: u64,
}

#[derive(Debug, Args)]
pub(crate) struct MaybeFenced {
    /// The task
    id: String,
    /// The fencing token, needed while someone holds a live claim on the task (unless
    /// you administer it)
    #[arg(long, value_name = "N")]
    fence: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct DependArgs {
    /// The dependent task
    id: String,
    /// The task it depends on
    #[arg(long, value_name = "OTHER")]
    on: String,
    /// hard: may not be claimed before OTHER completed; soft: should come after it;
    /// optional: informational
    #[arg(long, default_value = "hard", value_parser = input::one_of(DependencyKind::NAMES, DependencyKind::parse))]
    kind: DependencyKind,
}

#[derive(Debug, Args)]
pub(crate) struct UndependArgs {
    /// The dependent task
    id: String,
    /// The task it depends on
    #[arg(long, value_name = "OTHER")]
    on: String,
}

pub(crate) fn run(ctx: &AgentCtx, c: TaskCommand) -> Result<Reply> {
    match c {
        TaskCommand::Create(a) => create(ctx, a),
        TaskCommand::Show { id } => show(ctx, &id),
        TaskCommand::List(a) => list(ctx, a),
        TaskCommand::Update(a) => update(ctx, a),
        TaskCommand::Assign(a) => assign(ctx, a),
        TaskCommand::Claim(a) => claim(ctx, a),
        TaskCommand::Renew(a) => renew(ctx, a),
        TaskCommand::Progress(a) => progress(ctx, a),
        TaskCommand::Complete(a) => complete(ctx, a),
        TaskCommand::Fail(a) => fail(ctx, a),
        TaskCommand::Release(a) => {
            let task = ctx.store().release_task(ctx.identity(), &a.id, a.fence)?;
            changed(&task, "released task")
        }
        TaskCommand::Block(a) => set_status(ctx, a, TaskStatus::Blocked, None),
        TaskCommand::Unblock(a) => {
            set_status(ctx, a, TaskStatus::Pending, Some(TaskStatus::Blocked))
        }
        TaskCommand::Cancel(a) => set_status(ctx, a, TaskStatus::Cancelled, None),
        TaskCommand::Retry(a) => set_status(ctx, a, TaskStatus::Pending, Some(TaskStatus::Failed)),
        TaskCommand::Depend(a) => depend(ctx, a),
        TaskCommand::Undepend(a) => undepend(ctx, a),
        TaskCommand::Ready { limit } => {
            let tasks = ctx.store().ready_tasks(ctx.identity(), clamp(limit))?;
            table_reply(&tasks, "no ready tasks")
        }
    }
}

fn clamp(limit: u64) -> usize {
    usize::try_from(limit).unwrap_or(1000)
}

/// The same words whether the task is absent or invisible to the agent.
fn not_found(id: &str) -> CliError {
    CliError::not_found(format!("task {id} not found"))
}

fn find(ctx: &AgentCtx, id: &str) -> Result<Task> {
    ctx.store().get_task(ctx.identity(), id)?.ok_or_else(|| not_found(id))
}

fn assignee(t: &Task) -> String {
    match (&t.assignee, &t.assignee_team) {
        (Some(a), _) => a.to_string(),
        (None, Some(team)) => format!("team {team}"),
        (None, None) => "-".to_owned(),
    }
}

fn lease_text(t: &Task) -> String {
    match &t.lease {
        Some(l) if matches!(t.status, TaskStatus::Claimed | TaskStatus::InProgress) => {
            format!("held by {} until {}", l.holder, output::time(l.expires_at.as_millis()))
        }
        _ => "-".to_owned(),
    }
}

fn describe(t: &Task) -> String {
    let hours = |h: Option<f64>| h.map_or_else(|| "-".to_owned(), |h| format!("{h}"));
    output::fields(&[
        ("id", t.id.clone()),
        ("title", t.title.clone()),
        ("status", t.status.as_str().to_owned()),
        ("priority", t.priority.to_string()),
        ("type", t.task_type.clone()),
        ("swarm", t.swarm.to_string()),
        ("level", output::level(t.level)),
        ("owner", output::opt(t.owner.as_ref())),
        ("team", output::opt(t.team.as_ref())),
        ("assignee", assignee(t)),
        ("progress", format!("{}%", t.progress)),
        ("lease", lease_text(t)),
        ("fencing token", t.fencing_token.to_string()),
        ("parent", output::opt(t.parent.as_ref())),
        ("deadline", output::opt_time(t.deadline)),
        ("requirements", output::list(&t.requirements)),
        ("estimated hours", hours(t.estimated_hours)),
        ("actual hours", hours(t.actual_hours)),
        ("description", if t.description.is_empty() { "-".into() } else { t.description.clone() }),
        ("metadata", t.metadata.to_string()),
        ("result", t.result.as_ref().map_or_else(|| "-".to_owned(), Json::to_string)),
        ("created", output::time(t.created_at.as_millis())),
        ("updated", output::time(t.updated_at.as_millis())),
    ])
}

/// A reply naming what happened to the task, with the task.
fn changed(task: &Task, what: &str) -> Result<Reply> {
    let text = format!("{what} {} (now {})", task.id, task.status.as_str());
    Ok(Reply::new(json!({ "task": to_json(task)? }), text))
}

fn table_reply(tasks: &[Task], empty: &str) -> Result<Reply> {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.status.as_str().to_owned(),
                t.priority.to_string(),
                t.task_type.clone(),
                assignee(t),
                format!("{}%", t.progress),
                output::clip(&t.title, 60),
            ]
        })
        .collect();
    let text = if tasks.is_empty() {
        empty.to_owned()
    } else {
        output::table(&["ID", "STATUS", "PRI", "TYPE", "ASSIGNEE", "DONE", "TITLE"], &rows)
    };
    Ok(Reply::new(json!({ "tasks": to_json(&tasks)? }), text))
}

fn create(ctx: &AgentCtx, a: CreateArgs) -> Result<Reply> {
    ctx.write_swarm()?;
    let mut spec = TaskSpec::new(a.title)
        .description(a.description)
        .task_type(a.task_type)
        .priority(a.priority);
    if let Some(id) = a.id {
        spec = spec.id(id);
    }
    if let Some(l) = a.level {
        spec = spec.level(l);
    }
    if let Some(t) = a.team {
        spec = spec.team(t);
    }
    if let Some(secs) = a.deadline_in {
        spec = spec.deadline(input::from_now(ctx.store(), "--deadline-in", secs)?);
    }
    if let Some(p) = a.parent {
        spec = spec.parent(p);
    }
    if !a.requirements.is_empty() {
        spec = spec.requirements(a.requirements);
    }
    if let Some(m) = &a.metadata {
        spec = spec.metadata(input::json_object("--metadata", m)?);
    }
    if let Some(h) = a.estimate {
        spec = spec.estimated_hours(h);
    }
    let task = ctx.store().create_task(ctx.identity(), spec)?;
    let text = format!("created task {}\n{}", task.id, describe(&task));
    Ok(Reply::new(json!({ "task": to_json(&task)? }), text))
}

fn dependency_rows(deps: &[Dependency]) -> Vec<Vec<String>> {
    deps.iter()
        .map(|d| {
            vec![
                d.on.clone(),
                d.kind.as_str().to_owned(),
                d.on_status.map_or("hidden", TaskStatus::as_str).to_owned(),
            ]
        })
        .collect()
}

fn show(ctx: &AgentCtx, id: &str) -> Result<Reply> {
    let task = find(ctx, id)?;
    let deps = ctx.store().task_dependencies(ctx.identity(), id)?;
    let deps_text = if deps.is_empty() {
        "depends on: nothing\n".to_owned()
    } else {
        format!(
            "depends on:\n{}",
            output::table(&["TASK", "KIND", "STATUS"], &dependency_rows(&deps))
        )
    };
    let text = format!("{}{deps_text}", describe(&task));
    Ok(Reply::new(json!({ "task": to_json(&task)?, "dependencies": to_json(&deps)? }), text))
}

fn list(ctx: &AgentCtx, a: ListArgs) -> Result<Reply> {
    let filter = TaskFilter {
        swarm: Some(ctx.read_swarm().clone()),
        status: a.status,
        assignee: a.assignee,
        task_type: a.task_type,
        parent: a.parent,
        ready_only: a.ready,
        limit: Some(clamp(a.limit)),
    };
    let tasks = ctx.store().list_tasks(ctx.identity(), &filter)?;
    table_reply(&tasks, "no tasks")
}

fn update(ctx: &AgentCtx, a: UpdateArgs) -> Result<Reply> {
    let changes = TaskChanges {
        title: a.title,
        description: a.description,
        priority: a.priority,
        deadline: a
            .deadline_in
            .map(|s| input::from_now(ctx.store(), "--deadline-in", s))
            .transpose()?,
        metadata: a.metadata.as_deref().map(|m| input::json_object("--metadata", m)).transpose()?,
        requirements: (!a.requirements.is_empty()).then_some(a.requirements),
        estimated_hours: a.estimate,
    };
    let nothing = changes.title.is_none()
        && changes.description.is_none()
        && changes.priority.is_none()
        && changes.deadline.is_none()
        && changes.metadata.is_none()
        && changes.requirements.is_none()
        && changes.estimated_hours.is_none();
    if nothing {
        return Err(CliError::usage(
            "nothing to change: give --title, --description, --priority, --deadline-in, --requirement, --metadata or --estimate",
        ));
    }
    let task = ctx.store().update_task(ctx.identity(), &a.id, changes)?;
    let text = format!("updated task {}\n{}", task.id, describe(&task));
    Ok(Reply::new(json!({ "task": to_json(&task)? }), text))
}

fn assign(ctx: &AgentCtx, a: AssignArgs) -> Result<Reply> {
    let to = match (a.to, a.team) {
        (Some(agent), _) => Assignee::Agent(agent),
        (None, Some(team)) => Assignee::Team(team),
        (None, None) => Assignee::Nobody,
    };
    let task = ctx.store().assign_task(ctx.identity(), &a.id, to)?;
    let text = format!(
        "task {} is assigned to {}",
        task.id,
        match assignee(&task).as_str() {
            "-" => "nobody".to_owned(),
            who => who.to_owned(),
        }
    );
    Ok(Reply::new(json!({ "task": to_json(&task)? }), text))
}

fn claim_reply(c: &Claim, what: &str) -> Result<Reply> {
    let text = format!(
        "{what} task {}\n{}",
        c.task.id,
        output::fields(&[
            ("token", c.token.to_string()),
            ("expires at", output::time(c.expires_at.as_millis())),
        ])
    );
    let doc = json!({ "task": to_json(&c.task)?, "token": c.token, "expires_at": c.expires_at.as_millis() });
    Ok(Reply::new(doc, text))
}

fn claim(ctx: &AgentCtx, a: ClaimArgs) -> Result<Reply> {
    let c = ctx.store().claim_task(ctx.identity(), &a.id, input::seconds(a.lease))?;
    claim_reply(&c, "claimed")
}

fn renew(ctx: &AgentCtx, a: RenewArgs) -> Result<Reply> {
    let c = ctx.store().renew_lease(ctx.identity(), &a.id, a.fence, input::seconds(a.lease))?;
    claim_reply(&c, "renewed the claim on")
}

fn progress(ctx: &AgentCtx, a: ProgressArgs) -> Result<Reply> {
    let task = ctx.store().report_progress(ctx.identity(), &a.id, a.fence, a.percent)?;
    let text = format!("task {} is {}% done", task.id, task.progress);
    Ok(Reply::new(json!({ "task": to_json(&task)? }), text))
}

fn complete(ctx: &AgentCtx, a: CompleteArgs) -> Result<Reply> {
    let result = a.result.as_deref().map(|r| input::json_value("--result", r)).transpose()?;
    let done = ctx.store().complete_task(ctx.identity(), &a.id, a.fence, result, a.hours)?;
    let text = if done.ready.is_empty() {
        format!("completed task {}", done.task.id)
    } else {
        format!("completed task {}\nnow ready: {}", done.task.id, done.ready.join(", "))
    };
    Ok(Reply::new(json!({ "task": to_json(&done.task)?, "ready": done.ready }), text))
}

fn fail(ctx: &AgentCtx, a: FailArgs) -> Result<Reply> {
    let task = ctx.store().fail_task(ctx.identity(), &a.id, a.fence, &a.reason)?;
    changed(&task, "failed task")
}

/// `block`, `unblock`, `cancel`, `retry`. `from`, when given, is the one status the
/// command applies to (`unblock` a blocked task, `retry` a failed one).
fn set_status(
    ctx: &AgentCtx,
    a: MaybeFenced,
    to: TaskStatus,
    from: Option<TaskStatus>,
) -> Result<Reply> {
    if let Some(from) = from {
        let task = find(ctx, &a.id)?;
        if task.status != from {
            return Err(CliError::usage(format!(
                "task {} is {}, not {}",
                a.id,
                task.status.as_str(),
                from.as_str()
            )));
        }
    }
    let task = ctx.store().set_task_status(ctx.identity(), &a.id, to, a.fence)?;
    let what = match (to, from) {
        (TaskStatus::Blocked, _) => "blocked task",
        (TaskStatus::Cancelled, _) => "cancelled task",
        (_, Some(TaskStatus::Failed)) => "retrying task",
        _ => "unblocked task",
    };
    changed(&task, what)
}

fn depend(ctx: &AgentCtx, a: DependArgs) -> Result<Reply> {
    ctx.store().add_dependency(ctx.identity(), &a.id, &a.on, a.kind)?;
    let text = format!("task {} depends on task {} ({})", a.id, a.on, a.kind.as_str());
    Ok(Reply::new(json!({ "task": a.id, "on": a.on, "kind": a.kind.as_str() }), text))
}

fn undepend(ctx: &AgentCtx, a: UndependArgs) -> Result<Reply> {
    if !ctx.store().remove_dependency(ctx.identity(), &a.id, &a.on)? {
        return Err(CliError::not_found(format!("task {} does not depend on task {}", a.id, a.on)));
    }
    let text = format!("task {} no longer depends on task {}", a.id, a.on);
    Ok(Reply::new(json!({ "task": a.id, "on": a.on, "removed": true }), text))
}

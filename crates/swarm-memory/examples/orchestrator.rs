//! A small orchestrator: a planner, a coder and a reviewer, each on its own thread, share
//! one swarm's memory, tasks, events and a consensus round.
//!
//! Run it with `cargo run -p swarm-memory --example orchestrator` (add `-- DIR` to keep
//! the database in DIR and explore it with `swarm-memory --db DIR/orchestrator.db ...`).
//!
//! - The planner writes the plan at swarm level, creates three tasks that depend on each
//!   other (design -> implement -> review) and announces them with an event.
//! - The coder claims whatever task is ready (a claim is atomic and comes with a fencing
//!   token), keeps private scratch notes, records its work at team level, completes the
//!   task and publishes `task.done`.
//! - The reviewer waits for `task.done` events, reads the team's notes, and votes on the
//!   release round the planner opened; the round decides once the quorum is reached.
//!
//! Each agent authenticates with the token it was issued, as a separate process would.

#![allow(clippy::print_stdout)] // An example: printing is its output.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use swarm_memory::{
    AclLevel, AgentSpec, Ballot, DependencyKind, EventSpec, Identity, RoundSpec, RoundStatus,
    Session, SetOptions, Store, SwarmMemory, TaskSpec, TeamId, Value,
};

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const TASKS: [&str; 3] = ["design", "implement", "review"];

fn main() -> Result<()> {
    let kept = std::env::args_os().nth(1).map(PathBuf::from);
    let temp = tempfile::tempdir()?;
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let system = SwarmMemory::builder().path(dir.join("orchestrator.db")).open()?;

    // The operator (trusted code holding the system) sets the swarm up.
    let team = system.registry().create_team(
        &Identity::System,
        Some("builders"),
        "Builders",
        Some(system.swarm()),
        None,
    )?;
    let mut sessions = Vec::new();
    for (id, kind) in [("planner", "planner"), ("coder", "coder"), ("reviewer", "reviewer")] {
        let registered = system.register_agent(
            AgentSpec::new(id, kind)?.id(id)?.team(team.id.as_str())?.capabilities([kind])?,
        )?;
        sessions
            .push(system.authenticate(registered.agent.id.as_str(), registered.token.expose())?);
    }
    let [planner, coder, reviewer]: [Session; 3] =
        sessions.try_into().map_err(|_| "three sessions")?;

    let round_id = plan(&system, &planner)?;
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let c = s.spawn(|| code(&system, &coder, &team.id));
        let r = s.spawn(|| review(&system, &reviewer, &round_id));
        c.join().map_err(|_| "the coder panicked")??;
        r.join().map_err(|_| "the reviewer panicked")??;
        Ok(())
    })?;

    // The planner casts the second vote (quorum 2), which decides the round.
    let store = system.store();
    let vote = store.vote(planner.identity(), &round_id, Ballot::approve())?;
    println!("planner: voted; this vote decided the round: {}", vote.decided_now);
    let round = store.get_round(planner.identity(), &round_id)?.ok_or("round vanished")?;
    println!(
        "release round: {} ({} for, {} against) after {} ms",
        round.status.as_str(),
        round.tally.votes_for,
        round.tally.votes_against,
        started.elapsed().as_millis()
    );
    let notes = system.create_memory_adapter(&planner, "work")?;
    for task in TASKS {
        let note = notes.get(&format!("{task}:summary"))?;
        println!("  {task}: {}", note.map_or_else(|| "(none)".to_owned(), |v| text(&v)));
    }
    // The coder's scratch notes are private: the planner cannot see them.
    assert_eq!(notes.get("scratch")?, None);
    let audit = store.verify_audit()?;
    println!("audit chain: {} rows, intact: {}", audit.rows, audit.is_intact());
    system.graceful_shutdown()?;
    if let Some(d) = kept {
        println!("database kept at {}", d.join("orchestrator.db").display());
    }
    Ok(())
}

/// The planner: the plan, the task graph, the announcement, the release round.
fn plan(system: &SwarmMemory, me: &Session) -> Result<String> {
    let store = system.store();
    let who = me.identity();
    let memory = system.create_memory_adapter(me, "work")?;
    memory.set(
        "plan",
        Value::Json(json!({ "goal": "ship the items API", "steps": TASKS })),
        &SetOptions::new().level(AclLevel::Swarm),
    )?;
    let mut previous: Option<String> = None;
    for (i, title) in TASKS.iter().enumerate() {
        let priority = u8::try_from(9 - i).unwrap_or(1);
        let task = store.create_task(who, TaskSpec::new(*title).id(*title).priority(priority))?;
        if let Some(p) = &previous {
            store.add_dependency(who, &task.id, p, DependencyKind::Hard)?;
        }
        previous = Some(task.id);
    }
    store.publish_event(who, EventSpec::new("plan.ready", json!({ "tasks": TASKS })))?;
    let round = store.request_consensus(
        who,
        RoundSpec::new("task", "review").description("release the items API?").quorum(2),
    )?;
    println!("planner: plan written, 3 tasks created, release round {} opened", round.id);
    Ok(round.id)
}

/// The coder: claims ready tasks until all are done.
fn code(system: &SwarmMemory, me: &Session, team: &TeamId) -> Result<()> {
    let store = system.store();
    let who = me.identity();
    let memory = system.create_memory_adapter(me, "work")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = 0;
    while done < TASKS.len() {
        if Instant::now() > deadline {
            return Err("the coder ran out of time".into());
        }
        let Some(task) = store.ready_tasks(who, 1)?.into_iter().next() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let claim = store.claim_task(who, &task.id, Duration::from_secs(60))?;
        memory.set("scratch", format!("thinking about {}", task.id), &SetOptions::new())?;
        store.report_progress(who, &task.id, claim.token, 50)?;
        memory.set(
            &format!("{}:summary", task.id),
            format!("{} done by the coder", task.title),
            &SetOptions::new().level(AclLevel::Swarm),
        )?;
        memory.incr_by("tasks-done", 1)?;
        let team_notes = SetOptions::new().level(AclLevel::Team).team(team.clone());
        memory.set(&format!("{}:details", task.id), "edge cases covered", &team_notes)?;
        let completion = store.complete_task(
            who,
            &task.id,
            Some(claim.token),
            Some(json!({ "ok": true })),
            None,
        )?;
        store.publish_event(who, EventSpec::new("task.done", json!({ "task": task.id })))?;
        println!("coder: completed {}; now ready: {:?}", task.id, completion.ready);
        done += 1;
    }
    Ok(())
}

/// The reviewer: consumes `task.done` events and votes once every task is done.
fn review(system: &SwarmMemory, me: &Session, round_id: &str) -> Result<()> {
    let store: &Store = system.store();
    let who = me.identity();
    let memory = system.create_memory_adapter(me, "work")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reviewed = Vec::new();
    while reviewed.len() < TASKS.len() {
        if Instant::now() > deadline {
            return Err("the reviewer ran out of time".into());
        }
        let deliveries = store.claim_events(who, "reviewer", 10, Duration::from_secs(30))?;
        if deliveries.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        for d in deliveries {
            if d.event.event_type == "task.done" {
                let task = d.event.payload["task"].as_str().unwrap_or_default().to_owned();
                // Team notes: the reviewer is in the team, so it sees them.
                let details = memory.get(&format!("{task}:details"))?;
                println!(
                    "reviewer: {task} reviewed ({})",
                    details.map_or("no details".into(), |v| text(&v))
                );
                reviewed.push(task);
            }
            store.ack_event(who, "reviewer", d.event.seq, d.attempt)?;
        }
    }
    let vote = store.vote(who, round_id, Ballot::approve().confidence(0.9))?;
    println!("reviewer: voted to release; the round is {}", vote.round.status.as_str());
    if vote.round.status == RoundStatus::Open {
        println!("reviewer: the quorum is 2, the round waits for a second vote");
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => format!("{other:?}"),
    }
}

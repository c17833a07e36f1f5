//! `task ...`: the task graph, claims under leases, fencing tokens.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{Agent, Env};

fn ids(doc: &serde_json::Value) -> Vec<String> {
    doc["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
}

fn token(doc: &serde_json::Value) -> String {
    doc["token"].as_u64().unwrap().to_string()
}

#[test]
fn create_show_list_update_assign() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |args: &[&str]| env.run_as(&ann, args);
    let doc = run(&[
        "task",
        "create",
        "--title",
        "Design the API",
        "--id",
        "design",
        "--type",
        "design",
        "--priority",
        "8",
        "--description",
        "REST, versioned",
        "--requirement",
        "openapi",
        "--requirement",
        "auth",
        "--metadata",
        r#"{"epic": "api"}"#,
        "--estimate",
        "3.5",
        "--deadline-in",
        "3600",
        "--json",
    ])
    .ok()
    .json();
    let t = &doc["task"];
    assert_eq!(t["id"], "design");
    assert_eq!(t["status"], "pending");
    assert_eq!(t["priority"], 8);
    assert_eq!(t["type"], "design");
    assert_eq!(t["level"], 3);
    assert_eq!(t["owner"], "ann");
    assert_eq!(t["requirements"], json!(["openapi", "auth"]));
    assert_eq!(t["metadata"]["epic"], "api");
    assert_eq!(t["estimated_hours"], 3.5);
    assert!(t["deadline"].as_i64().unwrap() > t["created_at"].as_i64().unwrap());
    let r = run(&["task", "create", "--title", "Build it", "--id", "build", "--parent", "design"]);
    assert!(r.ok().stdout.starts_with("created task build"));
    run(&["task", "create", "--title", "Generated id"]).ok();

    let all = run(&["task", "list", "--json"]).ok().json();
    assert_eq!(ids(&all).len(), 3);
    assert_eq!(ids(&all)[0], "design", "highest priority first");
    assert_eq!(ids(&run(&["task", "list", "--type", "design", "--json"]).ok().json()), ["design"]);
    assert_eq!(ids(&run(&["task", "list", "--parent", "design", "--json"]).ok().json()), ["build"]);
    assert_eq!(ids(&run(&["task", "list", "--limit", "1", "--json"]).ok().json()).len(), 1);
    let none = run(&["task", "list", "--status", "completed", "--json"]).ok().json();
    assert_eq!(none["tasks"], json!([]));
    assert!(run(&["task", "list"]).ok().stdout.starts_with("ID "));
    run(&["task", "list", "--status", "done"]).code(2);

    let show = run(&["task", "show", "design"]).ok();
    for needle in ["title:", "Design the API", "priority:        8", "depends on: nothing"] {
        assert!(show.stdout.contains(needle), "{needle}:\n{}", show.stdout);
    }
    let doc = run(&[
        "task",
        "update",
        "build",
        "--title",
        "Build the API",
        "--priority",
        "9",
        "--requirement",
        "tests",
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(doc["task"]["title"], "Build the API");
    assert_eq!(doc["task"]["priority"], 9);
    assert_eq!(doc["task"]["requirements"], json!(["tests"]));
    run(&["task", "update", "build"]).fails(2, "nothing to change");
    run(&["task", "update", "nope", "--title", "x"]).fails(3, "task nope not found");
    run(&["task", "update", "build", "--priority", "11"]).code(2);

    // Assignment decides who may claim.
    let ben = env.register("ben", &[]);
    env.run(&["team", "create", "--name", "Core", "--id", "core", "--leader", "ann"]).ok();
    let doc = run(&["task", "assign", "build", "--to", "ann", "--json"]).ok().json();
    assert_eq!(doc["task"]["assignee"], "ann");
    env.run_as(&ben, &["task", "claim", "build"]).fails(4, "permission denied");
    let doc = run(&["task", "assign", "build", "--team", "core", "--json"]).ok().json();
    assert_eq!(doc["task"]["assignee_team"], "core");
    let r = run(&["task", "assign", "build", "--nobody"]).ok();
    assert!(r.stdout.contains("assigned to nobody"), "{}", r.stdout);
    run(&["task", "assign", "build"]).code(2);
    run(&["task", "assign", "build", "--to", "nobody-here"]).fails(3, "not found");
}

#[test]
fn claim_progress_complete_and_the_dependency_graph() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |args: &[&str]| env.run_as(&ann, args);
    for id in ["a", "b", "c"] {
        run(&["task", "create", "--title", id, "--id", id]).ok();
    }
    run(&["task", "depend", "b", "--on", "a"]).ok();
    let doc = run(&["task", "depend", "c", "--on", "b", "--kind", "hard", "--json"]).ok().json();
    assert_eq!(doc, json!({ "task": "c", "on": "b", "kind": "hard" }));
    run(&["task", "depend", "c", "--on", "a", "--kind", "soft"]).ok();
    run(&["task", "depend", "a", "--on", "c"]).fails(2, "it would close the cycle a -> c");
    run(&["task", "depend", "a", "--on", "a"]).fails(2, "cycle");
    run(&["task", "depend", "a", "--on", "nope"]).fails(3, "task nope not found");
    run(&["task", "depend", "a", "--on", "b", "--kind", "maybe"]).code(2);

    let show = run(&["task", "show", "c", "--json"]).ok().json();
    let deps: HashMap<&str, (&str, &str)> = show["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["on"].as_str().unwrap(),
                (d["kind"].as_str().unwrap(), d["on_status"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(deps["a"], ("soft", "pending"));
    assert_eq!(deps["b"], ("hard", "pending"));
    assert_eq!(ids(&run(&["task", "ready", "--json"]).ok().json()), ["a"]);
    assert_eq!(ids(&run(&["task", "list", "--ready", "--json"]).ok().json()), ["a"]);

    // A task waiting for a hard dependency cannot be claimed: exit 5, kind blocked.
    let doc = run(&["task", "claim", "b", "--json"]).code(5).json();
    assert_eq!(doc["error"]["kind"], "blocked");
    run(&["task", "claim", "b"]).fails(5, "task b waits for a");

    let claim = run(&["task", "claim", "a", "--lease", "60", "--json"]).ok().json();
    assert_eq!(claim["task"]["status"], "claimed");
    assert_eq!(claim["token"], 1);
    let expires = claim["expires_at"].as_i64().unwrap();
    assert!(expires > claim["task"]["updated_at"].as_i64().unwrap());
    let fence = token(&claim);
    let renewed =
        run(&["task", "renew", "a", "--fence", &fence, "--lease", "600", "--json"]).ok().json();
    assert_eq!(renewed["token"], 1);
    assert!(renewed["expires_at"].as_i64().unwrap() > expires);
    let doc = run(&["task", "progress", "a", "--fence", &fence, "40", "--json"]).ok().json();
    assert_eq!(doc["task"]["status"], "in_progress");
    assert_eq!(doc["task"]["progress"], 40);
    run(&["task", "progress", "a", "--fence", &fence, "101"]).code(2);
    run(&["task", "complete", "a"]).fails(2, "needs the fencing token");
    let r = run(&["task", "complete", "a", "--fence", &fence, "--result", "{\"ok\": true}"]).ok();
    assert_eq!(r.stdout, "completed task a\nnow ready: b\n");
    let doc = run(&["task", "show", "a", "--json"]).ok().json();
    assert_eq!(doc["task"]["status"], "completed");
    assert_eq!(doc["task"]["result"]["ok"], true);

    // complete --json lists what became ready; --hours is recorded.
    let fence = token(&run(&["task", "claim", "b", "--json"]).ok().json());
    let done =
        run(&["task", "complete", "b", "--fence", &fence, "--hours", "1.5", "--json"]).ok().json();
    assert_eq!(done["ready"], json!(["c"]));
    assert_eq!(done["task"]["actual_hours"], 1.5);
    run(&["task", "complete", "c", "--fence", "1", "--result", "{"]).fails(2, "--result");

    // release, fail, retry, block, unblock, cancel.
    let fence = token(&run(&["task", "claim", "c", "--json"]).ok().json());
    let doc = run(&["task", "release", "c", "--fence", &fence, "--json"]).ok().json();
    assert_eq!(doc["task"]["status"], "pending");
    let fence = token(&run(&["task", "claim", "c", "--json"]).ok().json());
    assert_eq!(fence, "2", "every claim raises the fencing token");
    let doc =
        run(&["task", "fail", "c", "--fence", &fence, "--reason", "disk full", "--json"]).ok();
    assert_eq!(doc.json()["task"]["result"]["error"], "disk full");
    run(&["task", "unblock", "c"]).fails(2, "task c is failed, not blocked");
    assert!(run(&["task", "retry", "c"]).ok().stdout.contains("now pending"));
    run(&["task", "retry", "c"]).fails(2, "not failed");
    let doc = run(&["task", "block", "c", "--json"]).ok().json();
    assert_eq!(doc["task"]["status"], "blocked");
    run(&["task", "claim", "c"]).fails(2, "blocked");
    run(&["task", "unblock", "c"]).ok();
    run(&["task", "cancel", "c"]).ok();
    run(&["task", "cancel", "c"]).code(2);

    let doc = run(&["task", "undepend", "c", "--on", "b", "--json"]).ok().json();
    assert_eq!(doc["removed"], true);
    run(&["task", "undepend", "c", "--on", "b"]).fails(3, "does not depend on");
}

#[test]
fn exactly_one_of_four_racing_claims_wins() {
    let env = Env::init();
    let agents: Vec<Agent> =
        ["a1", "a2", "a3", "a4"].iter().map(|id| env.register(id, &[])).collect();
    env.run_as(&agents[0], &["task", "create", "--title", "contested", "--id", "t"]).ok();
    let children: Vec<_> =
        agents.iter().map(|a| env.spawn_as(a, &["task", "claim", "t", "--json"])).collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 5).count(), 3, "{codes:?}");
    let doc = env.run_as(&agents[0], &["task", "show", "t", "--json"]).ok().json();
    assert_eq!(doc["task"]["fencing_token"], 1);
    let winner = doc["task"]["lease"]["holder"].as_str().unwrap().to_owned();
    // The losers' attempts are recorded as conflicts, already resolved.
    let conflicts =
        env.run_as(&agents[0], &["conflict", "list", "--type", "concurrent_claim", "--json"]);
    let conflicts = conflicts.ok().json();
    assert_eq!(conflicts["conflicts"].as_array().unwrap().len(), 3);
    assert!(conflicts["conflicts"][0]["description"].as_str().unwrap().contains(&winner));
}

#[test]
fn a_stale_fencing_token_is_refused() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    env.run_as(&ann, &["task", "create", "--title", "t", "--id", "t"]).ok();
    let old =
        token(&env.run_as(&ann, &["task", "claim", "t", "--lease", "1", "--json"]).ok().json());
    let claimed = env.run_as(&ben, &["task", "claim", "t"]).fails(5, "claimed by ann until ");
    // The lease's end reads as an RFC 3339 UTC time, not Unix milliseconds.
    let until = claimed.error_line().split("until ").nth(1).unwrap();
    let stamp = until
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit() && c != 'Z');
    assert_eq!(stamp.len(), "2026-12-01T09:27:31.012Z".len(), "{}", claimed.error_line());
    assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{}", claimed.error_line());
    // The lease lapses and ben takes over: ann's token is stale.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new = token(&env.run_as(&ben, &["task", "claim", "t", "--json"]).ok().json());
    assert_ne!(old, new);
    env.run_as(&ann, &["task", "progress", "t", "--fence", &old, "90"]).fails(5, "claimed by ben");
    let doc =
        env.run_as(&ann, &["task", "complete", "t", "--fence", &old, "--json"]).code(5).json();
    assert_eq!(doc["error"]["kind"], "conflict");
    // Ben's own stale token (an older number) is refused too; the current one works.
    env.run_as(&ben, &["task", "renew", "t", "--fence", &old]).fails(5, "fencing token");
    env.run_as(&ben, &["task", "complete", "t", "--fence", &new]).ok();
    let doc = env.run_as(&ann, &["task", "show", "t", "--json"]).ok().json();
    assert_eq!(doc["task"]["status"], "completed");
    assert_eq!(doc["task"]["lease"], serde_json::Value::Null, "completing ends the lease");
}

#[test]
fn another_agents_private_task_reads_like_an_absent_one() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    env.run_as(&ann, &["task", "create", "--title", "mine", "--id", "mine", "--level", "private"])
        .ok();
    let hidden = env.run_as(&ben, &["task", "show", "mine"]).fails(3, "not found");
    let absent = env.run_as(&ben, &["task", "show", "zzzz"]).fails(3, "not found");
    assert_eq!(hidden.error_line().replace("mine", "X"), absent.error_line().replace("zzzz", "X"));
    for args in [
        &["task", "claim", "mine"][..],
        &["task", "cancel", "mine"],
        &["task", "update", "mine", "--title", "x"],
        &["task", "depend", "mine", "--on", "mine"],
    ] {
        env.run_as(&ben, args).fails(3, "task mine not found");
    }
    assert_eq!(env.run_as(&ben, &["task", "list", "--json"]).ok().json()["tasks"], json!([]));
    assert_eq!(ids(&env.run_as(&ann, &["task", "list", "--json"]).ok().json()), ["mine"]);
    // Without credentials nothing is shown at all.
    env.run(&["task", "list"]).fails(4, "--agent ID and --token TOKEN");
}

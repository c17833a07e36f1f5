//! `agent ...` and `team ...`.

use crate::support::{Agent, Env};

#[test]
fn register_prints_the_id_and_the_token_once() {
    let env = Env::init();
    let r = env
        .run(&["agent", "register", "--name", "Backend Developer", "--type", "backend-dev"])
        .ok();
    let id = r.stdout.lines().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    let token = r.stdout.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_owned();
    assert!(id.starts_with("agt_"), "{id}");
    assert!(token.starts_with("smt_"), "{token}");
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("shown only now"), "{}", warnings[0]);
    assert!(!r.stderr.contains(&token));

    // The token works, and nothing else ever prints it.
    let agent = Agent { id: id.clone(), token: token.clone() };
    env.run_as(&agent, &["set", "k", "v"]).ok();
    for args in [
        &["agent", "list"][..],
        &["agent", "list", "--json"],
        &["agent", "show", &id],
        &["agent", "show", &id, "--json"],
        &["audit", "tail", "-n", "100", "--json"],
        &["doctor", "--json"],
    ] {
        let out = env.run(args).ok();
        assert!(!out.stdout.contains(&token) && !out.stderr.contains(&token), "{args:?}");
    }

    // --json: one document with the id, the token and the record.
    let doc = env
        .run(&[
            "agent",
            "register",
            "--name",
            "Ann",
            "--type",
            "qa",
            "--id",
            "ann",
            "--capability",
            "api",
            "--capability",
            "db",
            "--metadata",
            r#"{"tier": 2}"#,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(doc["id"], "ann");
    assert!(doc["token"].as_str().unwrap().starts_with("smt_"));
    assert_eq!(doc["agent"]["capabilities"], serde_json::json!(["api", "db"]));
    assert_eq!(doc["agent"]["metadata"]["tier"], 2);
    assert_eq!(doc["agent"]["swarm"], "default");

    // The same id twice, bad metadata, a reserved id: invalid input.
    env.run(&["agent", "register", "--name", "x", "--type", "t", "--metadata", "[1]"])
        .fails(2, "JSON object");
    env.run(&["agent", "register", "--name", "x", "--type", "t", "--metadata", "{"])
        .fails(2, "not valid JSON");
    env.run(&["agent", "register", "--name", "x", "--type", "t", "--id", "system"]).code(2);
}

#[test]
fn list_show_update_remove() {
    let env = Env::init();
    env.run(&["team", "create", "--name", "Core", "--id", "core"]).ok();
    env.register("ann", &["--team", "core", "--capability", "api"]);
    env.register("ben", &["--capability", "ui"]);
    // Opening an existing database never creates a swarm: `other` is created first.
    env.register_fails_in_missing_swarm("cid");
    env.run(&["swarm", "create", "other"]).ok();
    env.register("cid", &["--swarm", "other", "--no-default-grants"]);

    let ids = |args: &[&str]| -> Vec<String> {
        let doc = env.run(args).ok().json();
        doc["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&["agent", "list", "--json"]), ["ann", "ben", "cid"]);
    assert_eq!(ids(&["agent", "list", "--json", "--swarm", "default"]), ["ann", "ben"]);
    assert_eq!(ids(&["agent", "list", "--json", "--team", "core"]), ["ann"]);
    assert_eq!(ids(&["agent", "list", "--json", "--capability", "ui"]), ["ben"]);
    assert_eq!(ids(&["agent", "list", "--json", "--type", "nobody"]), Vec::<String>::new());
    let table = env.run(&["agent", "list"]).ok();
    assert!(table.stdout.starts_with("ID "), "{}", table.stdout);
    assert!(table.stdout.contains("core"), "{}", table.stdout);

    let show = env.run(&["agent", "show", "ann", "--json"]).ok().json();
    assert_eq!(show["agent"]["teams"], serde_json::json!(["core"]));
    assert!(show["grants"].as_array().unwrap().iter().any(|g| g["grant"]["resource"] == "memory"));
    let show = env.run(&["agent", "show", "cid", "--json"]).ok().json();
    assert_eq!(show["grants"], serde_json::json!([]));
    assert!(env.run(&["agent", "show", "ann"]).ok().stdout.contains("grants:"));
    env.run(&["agent", "show", "nobody"]).fails(3, "agent nobody not found");

    let doc = env
        .run(&[
            "agent",
            "update",
            "ben",
            "--name",
            "Ben B",
            "--status",
            "suspended",
            "--capability",
            "ux",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(doc["agent"]["name"], "Ben B");
    assert_eq!(doc["agent"]["status"], "suspended");
    assert_eq!(doc["agent"]["capabilities"], serde_json::json!(["ux"]));
    assert_eq!(ids(&["agent", "list", "--json", "--status", "suspended"]), ["ben"]);
    env.run(&["agent", "update", "ben"]).fails(2, "nothing to change");
    env.run(&["agent", "update", "ben", "--status", "terminated"]).code(2);
    env.run(&["agent", "update", "nobody", "--name", "x"]).fails(3, "not found");

    env.run(&["agent", "remove", "cid"]).ok();
    assert_eq!(ids(&["agent", "list", "--json", "--status", "terminated"]), ["cid"]);
    env.run(&["agent", "remove", "nobody"]).fails(3, "not found");
}

#[test]
fn a_suspended_or_removed_agent_cannot_act() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run(&["agent", "update", "ann", "--status", "suspended"]).ok();
    env.run_as(&ann, &["get", "k"]).fails(4, "suspended");
    env.run(&["agent", "update", "ann", "--status", "active"]).ok();
    env.run_as(&ann, &["has", "k"]).ok();
    env.run(&["agent", "remove", "ann"]).ok();
    env.run_as(&ann, &["has", "k"]).fails(4, "authentication failed");
}

#[test]
fn rotate_token_replaces_the_old_one_at_once() {
    let env = Env::init();
    let old = env.register("ann", &[]);
    env.run_as(&old, &["set", "k", "v"]).ok();
    let r = env.run(&["agent", "rotate-token", "ann", "--json"]).ok();
    assert!(r.stderr.contains("shown only now"), "{}", r.stderr);
    let doc = r.json();
    let new = Agent { id: "ann".into(), token: doc["token"].as_str().unwrap().to_owned() };
    assert_ne!(new.token, old.token);
    env.run_as(&old, &["get", "k"]).fails(4, "authentication failed");
    assert_eq!(env.run_as(&new, &["get", "k"]).ok().out(), "v");
    env.run(&["agent", "rotate-token", "nobody"]).fails(3, "not found");
}

#[test]
fn teams_create_add_remove_list_show() {
    let env = Env::init();
    env.register("ann", &[]);
    env.register("ben", &[]);
    let doc = env
        .run(&[
            "team", "create", "--name", "Backend", "--id", "backend", "--leader", "ann", "--json",
        ])
        .ok()
        .json();
    assert_eq!(doc["team"]["leader"], "ann");
    assert_eq!(doc["team"]["members"], serde_json::json!(["ann"]));
    env.run(&["team", "create", "--name", "Backend"]).fails(2, "already has a team");
    env.run(&["team", "create", "--name", "X", "--leader", "nobody"]).fails(3, "agent nobody");

    assert!(env.run(&["team", "add", "backend", "ben"]).ok().stdout.contains("added agent ben"));
    let again = env.run(&["team", "add", "backend", "ben", "--json"]).ok().json();
    assert_eq!(again["changed"], false);
    let show = env.run(&["team", "show", "backend", "--json"]).ok().json();
    assert_eq!(show["team"]["members"], serde_json::json!(["ann", "ben"]));
    assert!(env.run(&["team", "show", "backend"]).ok().stdout.contains("members: ann, ben"));

    env.run(&["team", "remove", "backend", "ben"]).ok();
    env.run(&["team", "remove", "backend", "ben"]).fails(3, "not a member");
    env.run(&["team", "add", "nope", "ben"]).fails(3, "team nope");
    env.run(&["team", "show", "nope"]).fails(3, "team nope not found");

    env.run(&["team", "create", "--name", "Ops", "--swarm", "other"])
        .fails(3, "swarm other not found: create it with `swarm-memory swarm create other`");
    env.run(&["swarm", "create", "other"]).ok();
    env.run(&["team", "create", "--name", "Ops", "--swarm", "other"]).ok();
    let all = env.run(&["team", "list", "--json"]).ok().json();
    assert_eq!(all["teams"].as_array().unwrap().len(), 2);
    let here = env.run(&["team", "list", "--json", "--swarm", "default"]).ok().json();
    assert_eq!(here["teams"][0]["id"], "backend");
    assert_eq!(here["teams"].as_array().unwrap().len(), 1);
    assert!(env.run(&["team", "list"]).ok().stdout.contains("Backend"));
}

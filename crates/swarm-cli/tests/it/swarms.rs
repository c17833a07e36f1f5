//! `swarm ...`, and the rule that naming a swarm never creates it.

use serde_json::json;

use crate::support::Env;

const HINT: &str = "swarm typo not found: create it with `swarm-memory swarm create typo`";

#[test]
fn create_list_show_update() {
    let env = Env::init();
    let doc = env
        .run(&[
            "swarm",
            "create",
            "phase-2",
            "--name",
            "Phase two",
            "--description",
            "the second phase",
            "--config",
            r#"{"max_agents": 8}"#,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(doc["swarm"]["id"], "phase-2");
    assert_eq!(doc["swarm"]["name"], "Phase two");
    assert_eq!(doc["swarm"]["status"], "active");
    assert_eq!(doc["swarm"]["config"]["max_agents"], 8);
    // The name defaults to the id.
    let r = env.run(&["swarm", "create", "lab"]).ok();
    assert!(r.stdout.starts_with("created swarm lab"), "{}", r.stdout);
    assert!(r.stdout.contains("name:        lab"), "{}", r.stdout);

    let list = env.run(&["swarm", "list", "--json"]).ok().json();
    let ids: Vec<&str> =
        list["swarms"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["default", "lab", "phase-2"]);
    assert!(env.run(&["swarm", "list"]).ok().stdout.starts_with("ID "));

    env.register("ann", &["--swarm", "phase-2"]);
    env.run(&["team", "create", "--name", "Core", "--swarm", "phase-2"]).ok();
    let show = env.run(&["swarm", "show", "phase-2", "--json"]).ok().json();
    assert_eq!(show["agents"], 1);
    assert_eq!(show["teams"], 1);
    assert_eq!(show["swarm"]["description"], "the second phase");
    assert!(env.run(&["swarm", "show", "lab"]).ok().stdout.contains("agents:      0"));

    let doc = env
        .run(&["swarm", "update", "phase-2", "--status", "paused", "--config", "{}", "--json"])
        .ok()
        .json();
    assert_eq!(doc["swarm"]["status"], "paused");
    assert_eq!(doc["swarm"]["config"], json!({}));
    let doc = env.run(&["swarm", "update", "phase-2", "--status", "archived", "--json"]).ok();
    assert_eq!(doc.json()["swarm"]["status"], "archived");
}

#[test]
fn bad_swarm_input_and_missing_swarms() {
    let env = Env::init();
    env.run(&["swarm", "create", "default"]).fails(2, "swarm default already exists");
    env.run(&["swarm", "create", "bad id"]).code(2);
    env.run(&["swarm", "create", "x", "--config", "[1]"])
        .fails(2, "--config must be a JSON object");
    env.run(&["swarm", "create", "x", "--config", "{"]).fails(2, "--config is not valid JSON");
    env.run(&["swarm", "update", "default"]).fails(2, "nothing to change");
    env.run(&["swarm", "update", "default", "--status", "frozen"]).code(2);
    env.run(&["swarm", "show", "typo"]).fails(3, HINT);
    env.run(&["swarm", "update", "typo", "--status", "paused"]).fails(3, HINT);
    let doc = env.run(&["swarm", "show", "typo", "--json"]).code(3).json();
    assert_eq!(doc["error"]["kind"], "not_found");
}

#[test]
fn naming_a_missing_swarm_is_an_error_never_a_new_swarm() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    // As the operator: registering, creating teams, listing.
    env.run(&["agent", "register", "--name", "x", "--type", "t", "--swarm", "typo"]).fails(3, HINT);
    env.run(&["team", "create", "--name", "x", "--swarm", "typo"]).fails(3, HINT);
    env.run(&["agent", "list", "--swarm", "typo"]).fails(3, HINT);
    env.run_with(&["team", "list"], &[("SWARM_ID", "typo")]).fails(3, HINT);
    // As an agent: after authentication, with the same message.
    env.run_as(&ann, &["get", "k", "--swarm", "typo"]).fails(3, HINT);
    env.run_as(&ann, &["task", "list", "--swarm", "typo"]).fails(3, HINT);
    let list = env.run(&["swarm", "list", "--json"]).ok().json();
    assert_eq!(list["swarms"].as_array().unwrap().len(), 1, "no swarm was created");
    // `init` is the one command that creates a swarm.
    env.run(&["init", "--swarm", "typo"]).ok();
    env.run(&["team", "create", "--name", "x", "--swarm", "typo"]).ok();
}

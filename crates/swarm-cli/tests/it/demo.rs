//! `demo`: the README's first command. It must run on a fresh machine with no set-up and
//! show what it claims.

use crate::support::Env;

#[test]
fn the_demo_runs_and_shows_every_feature_it_claims() {
    let env = Env::new();
    let doc = env.run(&["demo", "--json"]).ok().json();
    let sections = doc["sections"].as_array().unwrap();
    let section = |title: &str| {
        sections
            .iter()
            .find(|s| s["section"].as_str().is_some_and(|t| t.contains(title)))
            .unwrap_or_else(|| panic!("no section {title}: {doc}"))["result"]
            .clone()
    };
    let levels = section("five levels");
    // Private: the owner only; team: the team; swarm and public: everyone; system: nobody.
    assert_eq!(
        levels["ada-notes"],
        serde_json::json!({"ada": true, "bo": false, "cy": false, "di": false})
    );
    assert_eq!(
        levels["backend-plan"],
        serde_json::json!({"ada": true, "bo": true, "cy": false, "di": false})
    );
    assert_eq!(
        levels["system-config"],
        serde_json::json!({"ada": false, "bo": false, "cy": false, "di": false})
    );
    let writes = section("writes check");
    assert_eq!(writes["overwrite_refused"], true);
    assert_eq!(writes["stale_write_refused"], true);
    assert_eq!(section("TTL"), serde_json::json!({"before": true, "after": false}));
    let counter = section("counter");
    assert_eq!(counter["value"], counter["expected"]);
    let tasks = section("task graph");
    assert_eq!(tasks["became_ready"], serde_json::json!(["implement"]));
    assert_eq!(tasks["cycle_refused"], true);
    assert_eq!(tasks["second_claim_refused"], true);
    assert_eq!(tasks["stale_token_refused"], true);
    assert_eq!(section("event")["claimed"], 1);
    assert_eq!(section("consensus")["status"], "achieved");
    assert_eq!(section("audit")["audit_intact"], true);
    // The temporary database is gone afterwards.
    assert_eq!(doc["kept"], false);
    let db = doc["database"].as_str().unwrap();
    assert!(!std::path::Path::new(db).exists(), "{db} left behind");
    assert!(
        std::fs::read_dir(env.dir()).unwrap().next().is_none(),
        "the demo wrote into the working directory"
    );
}

#[test]
fn the_demo_keeps_its_database_when_asked_and_it_then_passes_doctor() {
    let env = Env::new();
    let text = env.run(&["demo", "--keep", "kept"]).ok();
    assert!(text.stdout.contains("== a consensus round decided"), "{}", text.stdout);
    let db = env.path("kept/demo.db");
    assert!(db.exists());
    env.run(&["--db", db.to_str().unwrap(), "--swarm", "demo-swarm", "doctor"]).ok();
    // A second run into the same directory refuses rather than mixing databases.
    env.run(&["demo", "--keep", "kept"]).fails(2, "exists");
}

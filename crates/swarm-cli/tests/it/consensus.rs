//! `consensus ...` and `conflict ...`.

use serde_json::json;

use crate::support::Env;

#[test]
fn propose_vote_show_list() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let cid = env.register("cid", &[]);
    let doc = env
        .run_as(
            &ann,
            &[
                "consensus",
                "propose",
                "--target-type",
                "deploy",
                "--target-id",
                "v2",
                "--description",
                "ship v2?",
                "--quorum",
                "3",
                "--deadline-in",
                "600",
                "--id",
                "r1",
                "--json",
            ],
        )
        .ok()
        .json();
    let r = &doc["round"];
    assert_eq!(r["id"], "r1");
    assert_eq!(r["status"], "open");
    assert_eq!(r["strategy"], "majority");
    assert_eq!(r["quorum"], 3);
    assert!(r["deadline"].as_i64().unwrap() > r["created_at"].as_i64().unwrap());

    let v = env.run_as(&ann, &["consensus", "vote", "r1", "--approve", "--reason", "tests pass"]);
    let v = v.ok();
    assert!(v.stdout.starts_with("voted approve on round r1: 1 for, 0 against"), "{}", v.stdout);
    assert!(v.stdout.contains("still open"), "{}", v.stdout);
    let doc = env
        .run_as(&ben, &["consensus", "vote", "r1", "--reject", "--confidence", "0.4", "--json"])
        .ok()
        .json();
    assert_eq!(doc["decided_now"], false);
    assert_eq!(doc["tally"]["votes_against"], 1);
    assert_eq!(doc["tally"]["weight_against"], 0.4);
    let doc = env.run_as(&cid, &["consensus", "vote", "r1", "--approve", "--json"]).ok().json();
    assert_eq!(doc["decided_now"], true, "the third vote reaches the quorum");
    assert_eq!(doc["status"], "achieved");
    assert_eq!(
        doc["round"]["tally"],
        json!({
            "votes_for": 2, "votes_against": 1, "weight_for": 2.0, "weight_against": 0.4
        })
    );
    // One vote per agent; a decided round takes no more.
    env.run_as(&ann, &["consensus", "vote", "r1", "--reject"]).fails(5, "found achieved");
    let doc = env.run_as(&ann, &["consensus", "vote", "r1", "--reject", "--json"]).code(5).json();
    assert_eq!(doc["error"]["kind"], "conflict");

    let show = env.run_as(&ben, &["consensus", "show", "r1", "--json"]).ok().json();
    assert_eq!(show["round"]["status"], "achieved");
    let voters: Vec<&str> =
        show["votes"].as_array().unwrap().iter().map(|v| v["agent"].as_str().unwrap()).collect();
    assert_eq!(voters.len(), 3);
    assert!(voters.contains(&"ann") && voters.contains(&"ben") && voters.contains(&"cid"));
    let text = env.run_as(&ben, &["consensus", "show", "r1"]).ok();
    assert!(text.stdout.contains("tests pass"), "{}", text.stdout);
    assert!(text.stdout.contains("status:      achieved"), "{}", text.stdout);

    // A second vote before the round is decided is a conflict too.
    env.run_as(
        &ann,
        &[
            "consensus",
            "propose",
            "--target-type",
            "t",
            "--target-id",
            "x",
            "--quorum",
            "2",
            "--id",
            "r2",
        ],
    )
    .ok();
    env.run_as(&ann, &["consensus", "vote", "r2", "--approve"]).ok();
    env.run_as(&ann, &["consensus", "vote", "r2", "--approve"]).fails(5, "already voted");

    let list = env.run_as(&cid, &["consensus", "list", "--json"]).ok().json();
    let ids: Vec<&str> =
        list["rounds"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    let open = env.run_as(&cid, &["consensus", "list", "--status", "open", "--json"]).ok().json();
    assert_eq!(open["rounds"][0]["id"], "r2");
    assert_eq!(open["rounds"].as_array().unwrap().len(), 1);
    assert!(env.run_as(&cid, &["consensus", "list"]).ok().stdout.starts_with("ID "));

    // The outcome was published as an event.
    let log =
        env.run_as(&cid, &["event", "list", "--type", "consensus_decided", "--json"]).ok().json();
    assert_eq!(log["events"][0]["payload"]["consensus"], "r1");
}

#[test]
fn strategies_and_bad_input() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let propose = |id: &str, extra: &[&str]| {
        let mut a =
            vec!["consensus", "propose", "--target-type", "t", "--target-id", id, "--id", id];
        a.extend_from_slice(extra);
        env.run_as(&ann, &a)
    };
    propose("u", &["--strategy", "unanimous", "--quorum", "2"]).ok();
    env.run_as(&ann, &["consensus", "vote", "u", "--approve"]).ok();
    let doc = env.run_as(&ben, &["consensus", "vote", "u", "--reject", "--json"]).ok().json();
    assert_eq!(doc["status"], "failed");
    propose("w", &["--strategy", "weighted", "--threshold", "0.6", "--quorum", "2"]).ok();
    env.run_as(&ann, &["consensus", "vote", "w", "--approve", "--confidence", "0.9"]).ok();
    let r = env.run_as(&ben, &["consensus", "vote", "w", "--reject", "--confidence", "0.3"]).ok();
    assert!(r.stdout.contains("this vote decided the round: achieved"), "{}", r.stdout);

    propose("x", &["--threshold", "1.5"]).fails(2, "threshold");
    propose("x", &["--quorum", "0"]).code(2);
    propose("x", &["--strategy", "dictator"]).code(2);
    propose("u", &[]).fails(2, "taken");
    env.run_as(&ann, &["consensus", "vote", "w"]).code(2);
    env.run_as(&ann, &["consensus", "vote", "w", "--approve", "--reject"]).code(2);
    env.run_as(&ann, &["consensus", "vote", "nope", "--approve", "--confidence", "2"])
        .fails(2, "confidence");
    env.run_as(&ann, &["consensus", "vote", "nope", "--approve"])
        .fails(3, "consensus nope not found");
    env.run_as(&ann, &["consensus", "show", "nope"]).fails(3, "consensus round nope not found");

    // A private round is invisible to others, exactly like an absent one.
    propose("mine", &["--level", "private"]).ok();
    let hidden = env.run_as(&ben, &["consensus", "show", "mine"]).fails(3, "not found");
    let absent = env.run_as(&ben, &["consensus", "show", "zzzz"]).fails(3, "not found");
    assert_eq!(hidden.error_line().replace("mine", "X"), absent.error_line().replace("zzzz", "X"));
    env.run_as(&ben, &["consensus", "vote", "mine", "--approve"]).code(3);
    env.run(&["consensus", "list"]).fails(4, "--agent ID and --token TOKEN");
}

#[test]
fn split_rounds_become_conflicts_to_escalate_and_resolve() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    env.run_as(
        &ann,
        &[
            "consensus",
            "propose",
            "--target-type",
            "plan",
            "--target-id",
            "p",
            "--quorum",
            "2",
            "--id",
            "r",
        ],
    )
    .ok();
    env.run_as(&ann, &["consensus", "vote", "r", "--approve"]).ok();
    env.run_as(&ben, &["consensus", "vote", "r", "--reject"]).ok();

    let list = env.run_as(&ben, &["conflict", "list", "--status", "open", "--json"]).ok().json();
    let conflicts = list["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["type"], "consensus_split");
    assert_eq!(conflicts[0]["entity_a"], json!(["consensus", "r"]));
    let id = conflicts[0]["id"].as_str().unwrap().to_owned();
    let typed = env.run_as(&ben, &["conflict", "list", "--type", "concurrent_claim", "--json"]);
    assert_eq!(typed.ok().json()["conflicts"], json!([]));
    assert!(env.run_as(&ben, &["conflict", "list"]).ok().stdout.contains("consensus_split"));

    // Resolving needs an admin grant on what the conflict is about.
    env.run_as(&ann, &["conflict", "resolve", &id, "--resolution", "agreed"]).fails(4, "admin");
    env.run_as(&ann, &["conflict", "resolve", "cf_nope", "--resolution", "x"])
        .fails(3, "not found");

    // Escalation is the operator's (as the sweeper's): a round per stale shared conflict.
    env.run(&["conflict", "escalate", "--older-than", "3600"]).ok();
    let doc = env.run(&["conflict", "escalate", "--older-than", "0", "--json"]).ok().json();
    assert_eq!(doc["escalated"], 1);
    let esc =
        env.run_as(&ben, &["conflict", "list", "--status", "escalated", "--json"]).ok().json();
    assert!(esc["conflicts"][0]["consensus_id"].is_string());

    env.run(&["grant", "ann", "consensus", "swarm", "admin"]).ok();
    let doc = env
        .run_as(&ann, &["conflict", "resolve", &id, "--resolution", "agreed offline", "--json"])
        .ok()
        .json();
    assert_eq!(doc["conflict"]["status"], "resolved");
    assert_eq!(doc["conflict"]["resolved_by"], "ann");
    assert_eq!(doc["conflict"]["resolution"], "agreed offline");
    env.run_as(&ann, &["conflict", "resolve", &id, "--resolution", "x"])
        .fails(2, "already resolved");
}

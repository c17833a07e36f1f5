//! The conventions every command follows: help, exit codes, one JSON document, errors.

use crate::support::Env;

#[test]
fn help_documents_exit_codes_json_and_the_trust_boundary() {
    let env = Env::new();
    let r = env.run(&["--help"]).ok();
    for needle in [
        "Trust boundary",
        "system principal",
        "--agent/--token",
        "Exit codes",
        "3  not found",
        "4  authentication failed or permission denied",
        "5  version conflict",
        "{\"error\": {\"code\"",
        "SQLITE_ENCRYPTION_KEY",
    ] {
        assert!(r.stdout.contains(needle), "--help lacks {needle:?}");
    }
    env.run(&["--version"]).ok();
    env.run(&["set", "--help"]).ok();
    // The token's environment value never shows in help.
    let r = env.run_with(&["get", "--help"], &[("SWARM_AGENT_TOKEN", "smt_secret")]).ok();
    assert!(!r.stdout.contains("smt_secret"));
}

#[test]
fn every_exit_code_is_reachable() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as(&ann, &["set", "k", "v"]).ok();
    let cases: Vec<(i32, Vec<&str>, bool)> = vec![
        (0, vec!["get", "k"], true),
        (2, vec!["set", "k"], true),
        (2, vec!["frobnicate"], false),
        (2, vec!["incr", "k"], true),
        (3, vec!["get", "missing"], true),
        (4, vec!["get", "k"], false),
        (5, vec!["set", "k", "w", "--if-version", "999999"], true),
    ];
    for (code, args, as_agent) in cases {
        let r = if as_agent { env.run_as(&ann, &args) } else { env.run(&args) };
        let r = r.code(code);
        if code != 0 {
            assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
            assert!(!r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"));
        }
    }
    // 1: a database that cannot be opened (not a database at all).
    std::fs::write(env.path("junk.db"), b"this is not sqlite, not even close........").unwrap();
    env.run(&["doctor", "--db", "junk.db"]).code(1);
}

#[test]
fn json_errors_are_one_document_on_stdout_and_a_line_on_stderr() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let r = env.run_as(&ann, &["get", "missing", "--json"]).fails(3, "not found");
    let doc = r.json();
    assert_eq!(doc["error"]["code"], 3);
    assert_eq!(doc["error"]["kind"], "not_found");
    assert!(doc["error"]["message"].as_str().unwrap().contains("missing"));
    assert_eq!(r.stdout.lines().count(), 1);

    // Usage errors found by the argument parser too.
    let r = env.run(&["grant", "ann", "memory", "9", "read", "--json"]).code(2);
    let doc = r.json();
    assert_eq!(doc["error"]["code"], 2);
    assert_eq!(doc["error"]["kind"], "usage");
    assert!(doc["error"]["message"].as_str().unwrap().contains("invalid acl level"));
    assert!(r.stderr.contains("invalid acl level"), "{}", r.stderr);

    // Without --json, stdout stays empty on failure.
    let r = env.run_as(&ann, &["get", "missing"]).code(3);
    assert_eq!(r.stdout, "");
}

#[test]
fn every_json_output_is_one_document() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run(&["team", "create", "--name", "Core", "--id", "core"]).ok();
    env.run_as(&ann, &["set", "k", "v"]).ok();
    let admin: &[&[&str]] = &[
        &["init"],
        &["doctor"],
        &["agent", "list"],
        &["agent", "show", "ann"],
        &["agent", "update", "ann", "--name", "Ann"],
        &["team", "list"],
        &["team", "show", "core"],
        &["team", "add", "core", "ann"],
        &["team", "remove", "core", "ann"],
        &["grant", "ann", "metrics", "3", "read"],
        &["revoke", "ann", "metrics", "3"],
        &["audit", "verify"],
        &["audit", "tail"],
    ];
    for args in admin {
        let mut a = args.to_vec();
        a.push("--json");
        env.run(&a).ok().json();
    }
    let memory: &[&[&str]] = &[
        &["set", "j", "1"],
        &["get", "j"],
        &["has", "j"],
        &["keys"],
        &["incr", "c"],
        &["decr", "c"],
        &["mget", "j", "c"],
        &["mset", "x", "1", "y", "2"],
        &["stats"],
        &["del", "j"],
    ];
    for args in memory {
        let mut a = args.to_vec();
        a.push("--json");
        env.run_as(&ann, &a).ok().json();
    }
    let tokens = env.run(&["agent", "rotate-token", "ann", "--json"]).ok().json();
    assert!(tokens["token"].is_string());
}

#[test]
fn logs_go_to_stderr_only() {
    let env = Env::init();
    let r = env.run_with(&["agent", "list", "--json"], &[("RUST_LOG", "trace")]).ok();
    r.json();
}

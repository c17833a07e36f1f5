//! Memory commands, as authenticated agents.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use base64::Engine as _;

use crate::support::{Agent, Env};

#[test]
fn set_and_get_every_type() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |args: &[&str]| env.run_as(&ann, args);

    let doc = run(&["set", "greeting", "hello world", "--json"]).ok().json();
    assert_eq!(doc["created"], true);
    let v1 = doc["version"].as_u64().unwrap();
    assert_eq!(run(&["get", "greeting"]).ok().stdout, "hello world\n");
    let doc = run(&["set", "greeting", "hi"]).ok();
    assert!(doc.stdout.starts_with("updated default/default/greeting"), "{}", doc.stdout);

    run(&["set", "cfg", r#"{ "a": [1, 2], "b": null }"#, "--type", "json"]).ok();
    assert_eq!(run(&["get", "cfg"]).ok().out(), r#"{"a":[1,2],"b":null}"#);
    run(&["set", "cfg", "{not json", "--type", "json"]).fails(2, "not valid JSON");

    run(&["set", "n", "-42", "--type", "integer"]).ok();
    assert_eq!(run(&["get", "n"]).ok().out(), "-42");
    run(&["set", "n", "4.5", "--type", "integer"]).fails(2, "not a 64-bit integer");

    let bytes = [0u8, 159, 146, 150, 255];
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    run(&["set", "blob", &b64, "--type", "bytes"]).ok();
    assert_eq!(run(&["get", "blob"]).ok().out(), b64);
    assert_eq!(run(&["get", "blob", "--raw"]).ok().bytes, bytes);
    run(&["set", "blob", "***", "--type", "bytes"]).fails(2, "not base64");
    run(&["get", "blob", "--raw", "--json"]).fails(2, "--raw");

    // --json prints the whole record with its metadata.
    run(&["set", "shared", "plan", "--level", "swarm", "--tag", "a", "--tag", "b", "--ttl", "600"])
        .ok();
    let doc = run(&["get", "shared", "--json"]).ok().json();
    assert_eq!(doc["value"], "plan");
    assert_eq!(doc["type"], "text");
    assert_eq!(doc["level"], 3);
    assert_eq!(doc["owner"], "ann");
    assert_eq!(doc["tags"], serde_json::json!(["a", "b"]));
    assert!(doc["expires_at"].as_i64().unwrap() > doc["created_at"].as_i64().unwrap());
    assert_eq!(doc["encrypted"], false);
    let doc = run(&["get", "greeting", "--json"]).ok().json();
    assert_eq!(doc["encrypted"], true, "private records are encrypted at rest");
    assert!(doc["version"].as_u64().unwrap() > v1);
    let doc = run(&["get", "cfg", "--json"]).ok().json();
    assert_eq!(doc["value"]["a"][1], 2);
    let doc = run(&["get", "blob", "--json"]).ok().json();
    assert_eq!(doc["value"], b64.as_str());
    assert_eq!(doc["type"], "bytes");

    // Bad names and levels are invalid input.
    run(&["set", "k", "v", "--namespace", "bad ns"]).code(2);
    run(&["set", "k", "v", "--level", "9"]).code(2);
    run(&["set", "k", "v", "--level", "team"]).fails(2, "needs a team");
}

#[test]
fn values_can_come_from_stdin() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run_as_with_stdin(&ann, &["set", "note", "-"], b"line one\nline two\n").ok();
    assert_eq!(env.run_as(&ann, &["get", "note", "--raw"]).ok().bytes, b"line one\nline two\n");
    let raw = [1u8, 2, 0, 255, 10];
    env.run_as_with_stdin(&ann, &["set", "bin", "-", "--type", "bytes"], &raw).ok();
    assert_eq!(env.run_as(&ann, &["get", "bin", "--raw"]).ok().bytes, raw);
    env.run_as_with_stdin(&ann, &["set", "doc", "-", "--type", "json"], b"{\"x\": true}\n").ok();
    assert_eq!(env.run_as(&ann, &["get", "doc"]).ok().out(), r#"{"x":true}"#);
    env.run_as_with_stdin(&ann, &["set", "doc", "-", "--type", "json"], b"nope").fails(2, "JSON");
    env.run_as_with_stdin(&ann, &["set", "t", "-"], &[0xff, 0xfe]).fails(2, "not UTF-8");
    env.run_as_with_stdin(&ann, &["mset", "a", "-", "b", "2"], b"from stdin").ok();
    assert_eq!(env.run_as(&ann, &["get", "a"]).ok().out(), "from stdin");
    env.run_as_with_stdin(&ann, &["mset", "a", "-", "b", "-"], b"x").fails(2, "only one VALUE");
}

#[test]
fn has_del_and_compare_and_set() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |args: &[&str]| env.run_as(&ann, args);
    assert_eq!(run(&["has", "k"]).ok().out(), "false");
    let v = run(&["set", "k", "v", "--json"]).ok().json()["version"].as_u64().unwrap();
    assert_eq!(run(&["has", "k"]).ok().out(), "true");
    assert_eq!(run(&["has", "k", "--json"]).ok().json()["exists"], true);

    let stale = (v + 100).to_string();
    run(&["set", "k", "w", "--if-version", &stale]).fails(5, "version conflict");
    let doc = run(&["set", "k", "w", "--if-version", &stale, "--json"]).code(5).json();
    assert_eq!(doc["error"]["code"], 5);
    assert_eq!(doc["error"]["kind"], "conflict");
    run(&["set", "k", "w", "--if-version", &v.to_string()]).ok();
    assert_eq!(run(&["get", "k"]).ok().out(), "w");

    run(&["del", "k", "--if-version", &stale]).fails(5, "version conflict");
    assert!(run(&["del", "k"]).ok().stdout.contains("deleted"));
    run(&["del", "k"]).fails(3, "not found");
    run(&["get", "k"]).fails(3, "not found");
    // Other namespaces are other records.
    run(&["set", "k", "in-a", "--namespace", "a"]).ok();
    run(&["get", "k"]).fails(3, "not found");
    assert_eq!(run(&["get", "k", "--namespace", "a"]).ok().out(), "in-a");
}

#[test]
fn keys_match_globs_and_treat_sql_wildcards_literally() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    for k in ["100%", "100x", "a_b", "axb", "[x]", "x", "user:1", "user:2", "user:10"] {
        env.run_as(&ann, &["set", k, "v"]).ok();
    }
    let keys = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["keys", "--json"];
        full.extend_from_slice(args);
        let doc = env.run_as(&ann, &full).ok().json();
        doc["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(keys(&["100%"]), ["100%"]);
    assert_eq!(keys(&["a_b"]), ["a_b"]);
    assert_eq!(keys(&["[x]"]), ["[x]"]);
    assert_eq!(keys(&["user:?"]), ["user:1", "user:2"]);
    assert_eq!(keys(&["user:*"]), ["user:1", "user:10", "user:2"]);
    assert_eq!(keys(&["a\\*b"]), Vec::<String>::new());
    assert_eq!(keys(&[]).len(), 9);
    let doc = env.run_as(&ann, &["keys", "user:*", "--limit", "2", "--json"]).ok().json();
    assert_eq!(doc["truncated"], true);
    assert_eq!(doc["keys"].as_array().unwrap().len(), 2);
    let plain = env.run_as(&ann, &["keys", "user:*"]).ok();
    assert_eq!(plain.out(), "user:1\nuser:10\nuser:2");
}

#[test]
fn incr_and_decr_are_atomic_across_processes() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    assert_eq!(env.run_as(&ann, &["incr", "hits"]).ok().out(), "1");
    assert_eq!(env.run_as(&ann, &["incr", "hits", "--by", "10"]).ok().out(), "11");
    assert_eq!(env.run_as(&ann, &["decr", "hits", "--by", "-4"]).ok().out(), "15");
    assert_eq!(env.run_as(&ann, &["decr", "hits", "--json"]).ok().json()["value"], 14);
    env.run_as(&ann, &["set", "word", "abc"]).ok();
    env.run_as(&ann, &["incr", "word"]).fails(2, "not an integer");
    env.run_as(&ann, &["set", "big", &i64::MAX.to_string(), "--type", "integer"]).ok();
    env.run_as(&ann, &["incr", "big"]).fails(2, "overflow");

    // Four processes at a time, ten increments each: no update is lost.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    env.run_as(&ann, &["incr", "shared"]).ok();
                }
            });
        }
    });
    assert_eq!(env.run_as(&ann, &["get", "shared"]).ok().out(), "40");
}

#[test]
fn mget_and_mset() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let doc =
        env.run_as(&ann, &["mset", "a", "1", "b", "-2", "--type", "integer", "--json"]).ok().json();
    assert_eq!(doc["written"].as_array().unwrap().len(), 2);
    let out = env.run_as(&ann, &["mget", "a", "missing", "b"]).ok();
    assert_eq!(out.out(), "a\t1\nmissing\t(not found)\nb\t-2");
    let doc = env.run_as(&ann, &["mget", "a", "missing", "--json"]).ok().json();
    assert_eq!(doc["items"][0]["value"], 1);
    assert_eq!(doc["items"][0]["found"], true);
    assert_eq!(doc["items"][1], serde_json::json!({ "key": "missing", "found": false }));
    env.run_as(&ann, &["mset", "a", "1", "b"]).fails(2, "KEY VALUE pairs");
    // All or nothing: one invalid item and nothing is written.
    env.run_as(&ann, &["mset", "c", "1", "d", "x", "--type", "integer"]).fails(2, "integer");
    env.run_as(&ann, &["get", "c"]).fails(3, "not found");

    let stats = env.run_as(&ann, &["stats", "--json"]).ok().json();
    assert_eq!(stats["records"], 2);
    assert_eq!(stats["swarm"], "default");
}

#[test]
fn agents_see_only_what_the_acl_lets_them() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    env.run_as(&ann, &["set", "secret", "ann only"]).ok();
    env.run_as(&ann, &["set", "plan", "for everyone", "--level", "swarm"]).ok();

    let hidden = env.run_as(&ben, &["get", "secret"]).fails(3, "not found");
    let absent = env.run_as(&ben, &["get", "no-such-key"]).fails(3, "not found");
    assert_eq!(
        hidden.error_line().replace("secret", "K"),
        absent.error_line().replace("no-such-key", "K"),
        "an invisible record reads exactly like an absent one"
    );
    assert_eq!(env.run_as(&ben, &["has", "secret"]).ok().out(), "false");
    env.run_as(&ben, &["del", "secret"]).fails(3, "not found");
    let doc = env.run_as(&ben, &["keys", "--json"]).ok().json();
    assert_eq!(doc["keys"], serde_json::json!(["plan"]));
    assert_eq!(env.run_as(&ben, &["get", "plan"]).ok().out(), "for everyone");
    // Nobody overwrites a record they cannot see.
    env.run_as(&ben, &["set", "secret", "mine now"]).code(4);
    assert_eq!(env.run_as(&ann, &["get", "secret"]).ok().out(), "ann only");
}

#[test]
fn memory_commands_fail_closed_without_valid_credentials() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run(&["get", "k"]).fails(4, "--agent ID and --token TOKEN");
    env.run_with(&["set", "k", "v"], &[("SWARM_AGENT_ID", "ann")]).fails(4, "SWARM_AGENT_TOKEN");
    let wrong =
        Agent { id: "ann".into(), token: format!("{}x", &ann.token[..ann.token.len() - 1]) };
    env.run_as(&wrong, &["get", "k"]).fails(4, "authentication failed");
    let unknown = Agent { id: "nobody".into(), token: ann.token.clone() };
    env.run_as(&unknown, &["get", "k"]).fails(4, "authentication failed");
    // Flags work as well as the environment.
    env.run(&["has", "k", "--agent", "ann", "--token", &ann.token]).ok();
    let doc = env.run(&["get", "k", "--json"]).code(4).json();
    assert_eq!(doc["error"]["kind"], "authentication");
}

#[test]
fn writes_stay_in_the_agents_own_swarm() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    env.run(&["swarm", "create", "other"]).ok();
    let zed = env.register("zed", &["--swarm", "other"]);
    env.run_as(&zed, &["set", "notice", "hello all", "--level", "public"]).ok();
    env.run_as(&zed, &["set", "inside", "swarm only", "--level", "swarm"]).ok();
    // A write naming another swarm is refused; reads may look there for public records.
    env.run_as(&ann, &["set", "k", "v", "--swarm", "other"]).fails(4, "belongs to swarm default");
    env.run_as(&ann, &["get", "notice"]).fails(3, "not found");
    assert_eq!(env.run_as(&ann, &["get", "notice", "--swarm", "other"]).ok().out(), "hello all");
    env.run_as(&ann, &["get", "inside", "--swarm", "other"]).fails(3, "not found");
    // A swarm that does not exist is named as such, not created.
    env.run_as(&ann, &["get", "notice", "--swarm", "typo"]).fails(3, "swarm typo not found");
    // Naming one's own swarm is fine.
    env.run_as(&zed, &["set", "k", "v", "--swarm", "other"]).ok();
}

#[test]
fn watch_prints_changes_made_by_other_processes() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let mut child = env
        .command(&["watch", "jobs:", "--timeout", "4", "--json"])
        .env("SWARM_AGENT_ID", &ben.id)
        .env("SWARM_AGENT_TOKEN", &ben.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The watcher says on stderr when it is in place.
    let mut ready = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.starts_with("watching swarm default"), "{ready}");
    env.run_as(&ann, &["set", "jobs:1", "queued", "--level", "swarm"]).ok();
    env.run_as(&ann, &["set", "jobs:secret", "private"]).ok();
    env.run_as(&ann, &["set", "other", "x", "--level", "swarm"]).ok();
    env.run_as(&ann, &["del", "jobs:1"]).ok();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> =
        lines.iter().map(|c| (c["op"].as_str().unwrap(), c["key"].as_str().unwrap())).collect();
    // Only visible changes under the prefix; never the value.
    assert_eq!(seen, [("set", "jobs:1"), ("delete", "jobs:1")]);
    assert!(lines.iter().all(|c| c.get("value").is_none()));

    // --from replays the feed; human lines otherwise.
    let r = env.run_as(&ann, &["watch", "--from", "0", "--timeout", "1"]).ok();
    assert_eq!(r.stdout.lines().count(), 4, "{}", r.stdout);
    assert!(r.stdout.contains("set default/default/jobs:secret"), "{}", r.stdout);
}

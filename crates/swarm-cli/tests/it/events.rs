//! `event ...`: the log, the queue and following.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};

use serde_json::{Value, json};

use crate::support::{Agent, Env};

fn seqs(doc: &Value, list: &str) -> Vec<u64> {
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.get("event").unwrap_or(e)["seq"].as_u64().unwrap())
        .collect()
}

fn publish(env: &Env, who: &Agent, args: &[&str]) -> u64 {
    let mut full = vec!["event", "publish"];
    full.extend_from_slice(args);
    full.push("--json");
    env.run_as(who, &full).ok().json()["event"]["seq"].as_u64().unwrap()
}

#[test]
fn publish_list_show() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let doc = env
        .run_as(
            &ann,
            &[
                "event",
                "publish",
                "build_started",
                r#"{"task": "build"}"#,
                "--priority",
                "8",
                "--ttl",
                "600",
                "--max-retries",
                "1",
                "--json",
            ],
        )
        .ok()
        .json();
    let e = &doc["event"];
    assert_eq!(e["type"], "build_started");
    assert_eq!(e["payload"]["task"], "build");
    assert_eq!(e["priority"], 8);
    assert_eq!(e["source"], "ann");
    assert_eq!(e["level"], 3);
    assert_eq!(e["status"], "pending");
    assert_eq!(e["max_retries"], 1);
    assert!(e["expires_at"].as_i64().unwrap() > e["created_at"].as_i64().unwrap());
    let first = e["seq"].as_u64().unwrap();
    let r = env.run_as_with_stdin(&ann, &["event", "publish", "note", "-"], b"[1, 2]\n").ok();
    assert_eq!(r.stdout, format!("published event {} (note)\n", first + 1));
    let ping = publish(&env, &ann, &["ping", "--parent", &first.to_string()]);
    env.run_as(&ann, &["event", "publish", "bad", "{"]).fails(2, "PAYLOAD_JSON is not valid JSON");
    env.run_as(&ann, &["event", "publish", "bad", "--priority", "11"]).code(2);
    env.run_as(&ann, &["event", "publish", "bad", "--level", "team"]).fails(2, "needs a team");

    let log = env.run_as(&ben, &["event", "list", "--json"]).ok().json();
    assert_eq!(seqs(&log, "events"), [first, first + 1, ping]);
    assert_eq!(log["cursor"], ping);
    let page = env.run_as(&ben, &["event", "list", "--after", &first.to_string(), "--limit", "1"]);
    let page = page.ok();
    assert!(page.stdout.contains("note"), "{}", page.stdout);
    assert!(page.stdout.ends_with(&format!(
        "cursor: {} (resume with --after {})\n",
        first + 1,
        first + 1
    )));
    let typed = env.run_as(&ben, &["event", "list", "--type", "ping", "--json"]).ok().json();
    assert_eq!(seqs(&typed, "events"), [ping]);
    let done = env.run_as(&ben, &["event", "list", "--after", &ping.to_string()]).ok();
    assert!(done.stdout.starts_with("no events"), "{}", done.stdout);

    let show = env.run_as(&ben, &["event", "show", &ping.to_string(), "--json"]).ok().json();
    assert_eq!(show["event"]["parent"], first);
    let text = env.run_as(&ben, &["event", "show", &first.to_string()]).ok();
    assert!(text.stdout.contains("payload:    {\"task\":\"build\"}"), "{}", text.stdout);
    env.run_as(&ben, &["event", "show", "999"]).fails(3, "event 999 not found");
}

#[test]
fn claim_ack_fail_and_dead_letters() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let low = publish(&env, &ann, &["job", r#"{"n": 1}"#, "--priority", "2"]);
    let high = publish(&env, &ann, &["job", r#"{"n": 2}"#, "--priority", "9"]);
    let once =
        publish(&env, &ann, &["job", r#"{"n": 3}"#, "--max-retries", "0", "--priority", "1"]);
    let for_ann = publish(&env, &ann, &["job", "{}", "--target", "ann", "--priority", "0"]);

    // Highest priority first; an event addressed to ann is not ben's to claim.
    let got = env.run_as(&ben, &["event", "claim", "--limit", "10", "--json"]).ok().json();
    assert_eq!(seqs(&got, "deliveries"), [high, low, once]);
    assert_eq!(got["consumer"], "cli");
    assert_eq!(got["deliveries"][0]["attempt"], 1);
    assert!(got["deliveries"][0]["visible_until"].as_i64().unwrap() > 0);
    // Claimed events are not handed out again while the claim holds.
    let again = env.run_as(&ben, &["event", "claim"]).ok();
    assert_eq!(again.out(), "no events to claim");
    let mine = env.run_as(&ann, &["event", "claim", "--consumer", "worker", "--json"]).ok().json();
    assert_eq!(seqs(&mine, "deliveries"), [for_ann]);

    let (h, l, o) = (high.to_string(), low.to_string(), once.to_string());
    let doc = env.run_as(&ben, &["event", "ack", &h, "--attempt", "1", "--json"]).ok().json();
    assert_eq!(doc["status"], "acked");
    env.run_as(&ben, &["event", "ack", &h, "--attempt", "1"]).fails(5, "found acked");
    // The wrong attempt or the wrong consumer: not this delivery.
    env.run_as(&ben, &["event", "ack", &l, "--attempt", "2"]).fails(5, "version conflict");
    env.run_as(&ben, &["event", "ack", &l, "--attempt", "1", "--consumer", "other"]).code(5);
    env.run_as(&ben, &["event", "ack", "999", "--attempt", "1"]).fails(3, "event 999 not found");

    let r = env.run_as(&ben, &["event", "fail", &l, "--attempt", "1", "--error", "flaky"]).ok();
    assert!(r.stdout.contains("offered again"), "{}", r.stdout);
    let doc = env
        .run_as(&ben, &["event", "fail", &o, "--attempt", "1", "--error", "broken", "--json"])
        .ok()
        .json();
    assert_eq!(doc["status"], "dead");
    let show = env.run_as(&ben, &["event", "show", &o, "--json"]).ok().json();
    assert_eq!(show["event"]["status"], "dead");
    assert_eq!(show["event"]["last_error"], "broken");
    env.run_as(&ben, &["event", "fail", &o, "--attempt", "1", "--error", "x"]).code(5);
    env.run_as(&ben, &["event", "claim", "--visibility", "0"]).code(2);
}

#[test]
fn two_consuming_processes_never_get_the_same_event() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let published: HashSet<u64> =
        (0..12).map(|i| publish(&env, &ann, &["job", &format!("{{\"i\": {i}}}")])).collect();
    let consume = |who: &Agent| {
        let mut got = Vec::new();
        loop {
            let out = env.run_as(who, &["event", "claim", "--limit", "2", "--json"]).ok().json();
            let batch = seqs(&out, "deliveries");
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| consume(&ann));
        let b = s.spawn(|| consume(&ben));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (sa, sb): (HashSet<u64>, HashSet<u64>) =
        (a.iter().copied().collect(), b.iter().copied().collect());
    assert_eq!(sa.len(), a.len(), "ann got an event twice: {a:?}");
    assert_eq!(sb.len(), b.len(), "ben got an event twice: {b:?}");
    assert!(sa.is_disjoint(&sb), "both got {:?}", sa.intersection(&sb).collect::<Vec<_>>());
    assert_eq!(&sa | &sb, published);
}

#[test]
fn another_agents_private_event_reads_like_an_absent_one() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let secret = publish(&env, &ann, &["diary", r#"{"mood": "fine"}"#, "--level", "private"]);
    let open = publish(&env, &ann, &["notice", "{}"]);
    let hidden = env.run_as(&ben, &["event", "show", &secret.to_string()]).fails(3, "not found");
    let absent = env.run_as(&ben, &["event", "show", "4242"]).fails(3, "not found");
    assert_eq!(
        hidden.error_line().replace(&secret.to_string(), "N"),
        absent.error_line().replace("4242", "N")
    );
    let log = env.run_as(&ben, &["event", "list", "--json"]).ok().json();
    assert_eq!(seqs(&log, "events"), [open]);
    assert_eq!(log["cursor"], open, "the cursor moves past what ben cannot see");
    let got = env.run_as(&ben, &["event", "claim", "--json"]).ok().json();
    assert_eq!(seqs(&got, "deliveries"), [open]);
    env.run_as(&ben, &["event", "ack", &secret.to_string(), "--attempt", "1"]).code(5);
    let own = env.run_as(&ann, &["event", "show", &secret.to_string(), "--json"]).ok().json();
    assert_eq!(own["event"]["payload"]["mood"], "fine");
}

#[test]
fn follow_prints_events_as_they_come_and_resumes_from_its_cursor() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let before = publish(&env, &ann, &["job", r#"{"n": 0}"#]);
    let mut child = env.spawn_as(&ben, &["event", "follow", "--timeout", "3", "--json"]);
    let mut ready = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.starts_with("following events of swarm default as consumer cli from seq 0"));
    let one = publish(&env, &ann, &["job", r#"{"n": 1}"#]);
    publish(&env, &ann, &["secret", "{}", "--level", "private"]);
    let two = publish(&env, &ann, &["job", r#"{"n": 2}"#]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(got, [before, one, two], "what was there, then what came, never the private one");
    assert_eq!(lines[2]["payload"], json!({ "n": 2 }));

    // The cursor was committed: a new follow starts after it.
    let three = publish(&env, &ann, &["job", r#"{"n": 3}"#]);
    let again = env.run_as(&ben, &["event", "follow", "--timeout", "1"]).ok();
    assert_eq!(again.out(), format!("{three} job from ann: {{\"n\":3}}"));
    let quiet = env.run_as(&ben, &["event", "follow", "--timeout", "1"]).ok();
    assert_eq!(quiet.stdout, "");
    // Another consumer name has its own cursor; --type filters.
    let all = env.run_as(&ben, &["event", "follow", "--consumer", "audit", "--timeout", "1"]).ok();
    assert_eq!(all.stdout.lines().count(), 4);
    let typed = ["event", "follow", "--consumer", "secrets", "--type", "secret", "--timeout", "1"];
    assert_eq!(env.run_as(&ben, &typed).ok().stdout, "", "ben cannot see the private one");
    assert_eq!(env.run_as(&ann, &typed).ok().stdout.lines().count(), 1);
}

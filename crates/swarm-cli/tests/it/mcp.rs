//! `swarm-memory mcp`: the built binary as an MCP server over stdio, driven the way a
//! client drives it (newline-delimited JSON-RPC), one server process per agent.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Agent, Env};

/// How long a test waits for one response before it calls the server hung. Not a timing
/// assertion: a healthy server answers in milliseconds.
const HANG: Duration = Duration::from_secs(60);

/// A running `swarm-memory mcp` and the client end of its stdio.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Every line the server wrote on stdout, in order.
    seen: Vec<String>,
    next_id: u64,
}

/// What a finished server did.
struct Finished {
    code: i32,
    stdout: Vec<String>,
    stderr: String,
}

impl Mcp {
    /// Starts `swarm-memory mcp ARGS` as `agent` in `env`'s directory.
    fn start(env: &Env, agent: &Agent, args: &[&str]) -> Self {
        let mut c = mcp_command(env, args);
        c.env("SWARM_AGENT_ID", &agent.id).env("SWARM_AGENT_TOKEN", &agent.token);
        Self::spawn(c)
    }

    fn spawn(mut c: Command) -> Self {
        let mut child =
            c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        // Drained all along, so trace logging can never fill the pipe and stall the server.
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines, stderr: Some(stderr), seen: Vec::new(), next_id: 1 }
    }

    fn send(&mut self, message: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line the server writes, parsed.
    fn next_message(&mut self) -> Value {
        match self.lines.recv_timeout(HANG) {
            Ok(line) => {
                self.seen.push(line.clone());
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"))
            }
            Err(RecvTimeoutError::Timeout) => panic!("no answer from the server in {HANG:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server closed stdout"),
        }
    }

    /// Sends a request and returns its id, without waiting for the answer.
    fn send_request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// Waits for the response to request `id` (the whole JSON-RPC message). The tests send
    /// one request at a time and the server sends no notifications, so the next message
    /// must be it.
    fn response(&mut self, id: u64) -> Value {
        let m = self.next_message();
        assert_eq!(m["id"], id, "unexpected message while waiting for {id}: {m}");
        m
    }

    /// Sends a request and waits for its response, as a client does before it sends the
    /// next one.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.response(id)
    }

    /// The 2025-11-25 handshake; returns the initialize result.
    fn initialize(&mut self) -> Value {
        let r = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "swarm-memory-tests", "version": "1" },
            }),
        );
        self.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        r["result"].clone()
    }

    /// Calls a tool and returns the `tools/call` result.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({ "name": tool, "arguments": args }));
        assert!(r.get("error").is_none(), "{tool} failed as a protocol error: {r}");
        r["result"].clone()
    }

    /// Calls a tool that must succeed and returns its structured content, checking that
    /// the text block mirrors it exactly.
    #[track_caller]
    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args.clone());
        assert_eq!(r["isError"], false, "{tool} {args} failed: {r}");
        let structured = r["structuredContent"].clone();
        assert!(structured.is_object(), "{r}");
        let text = r["content"][0]["text"].as_str().unwrap();
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), structured, "text mirror");
        structured
    }

    /// Calls a tool that must fail as a tool result; returns the error kind and the first
    /// text block.
    #[track_caller]
    fn err(&mut self, tool: &str, args: Value) -> (String, String) {
        let r = self.call(tool, args.clone());
        assert_eq!(r["isError"], true, "{tool} {args} should have failed: {r}");
        let kind = r["structuredContent"]["error"]["kind"].as_str().unwrap().to_owned();
        let text = r["content"][0]["text"].as_str().unwrap().to_owned();
        assert!(text.starts_with(&format!("{kind}: ")), "{text}");
        (kind, text)
    }

    /// Closes stdin (end of input) and waits for the server to exit.
    fn finish(mut self) -> Finished {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        // Whatever it wrote after the last response.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(0)) {
            self.seen.push(line);
        }
        let stderr = self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default();
        let stdout = std::mem::take(&mut self.seen);
        Finished { code: status.code().unwrap_or(-1), stdout, stderr }
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        // A failed test must not leave its server behind.
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `swarm-memory mcp ARGS` in `env`'s directory with a clean environment.
/// Two initialized servers with the swarm profile, acting as `a` and `b`.
fn swarm_servers(env: &Env, a: &Agent, b: &Agent) -> (Mcp, Mcp) {
    let mut first = Mcp::start(env, a, &["--tools", "swarm"]);
    let mut second = Mcp::start(env, b, &["--tools", "swarm"]);
    first.initialize();
    second.initialize();
    (first, second)
}

fn mcp_command(env: &Env, args: &[&str]) -> Command {
    let mut all = vec!["mcp"];
    all.extend_from_slice(args);
    env.command(&all)
}

fn names(tools: &Value) -> Vec<String> {
    tools.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

const CORE: [&str; 5] = ["whoami", "memory_store", "memory_get", "memory_search", "memory_delete"];
const SWARM: [&str; 8] = [
    "task_create",
    "task_list",
    "task_update",
    "event_publish",
    "event_poll",
    "consensus_propose",
    "consensus_vote",
    "consensus_status",
];

#[test]
fn handshake_lists_the_tools_of_each_profile_and_exits_cleanly_at_end_of_input() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut core = Mcp::start(&env, &ann, &[]);
    let init = core.initialize();
    assert_eq!(init["protocolVersion"], "2025-11-25");
    assert_eq!(init["serverInfo"]["name"], "swarm-memory");
    assert_eq!(init["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["instructions"].as_str().unwrap().contains("agent ann"));
    let tools = core.request("tools/list", json!({}))["result"]["tools"].clone();
    assert_eq!(names(&tools), CORE);
    // A tool of the larger profile is a protocol error here, with the way to get it.
    let r = core.request("tools/call", json!({ "name": "task_list", "arguments": {} }));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("--tools swarm"), "{r}");
    let r = core.request("tools/call", json!({ "name": "no_such_tool", "arguments": {} }));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let done = core.finish();
    assert_eq!(done.code, 0, "{}", done.stderr);
    // End of input shut the system down: the WAL was checkpointed into the database.
    let wal = env.path("swarm-memory.db-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "WAL left behind");

    let mut swarm = Mcp::start(&env, &ann, &["--tools", "swarm"]);
    swarm.initialize();
    let tools = swarm.request("tools/list", json!({}))["result"]["tools"].clone();
    let expected: Vec<&str> = CORE.iter().chain(SWARM.iter()).copied().collect();
    assert_eq!(names(&tools), expected);
    for t in tools.as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        assert!(
            !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "{name}"
        );
        let schema = &t["inputSchema"];
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        assert!(schema["properties"].is_object(), "{name}: {schema}");
        assert!(!schema.to_string().contains("$ref"), "{name}: {schema}");
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 20), "{name}");
        let a = &t["annotations"];
        let read_only = a["readOnlyHint"].as_bool().unwrap();
        let destructive = a["destructiveHint"].as_bool().unwrap();
        let expected_read_only = matches!(
            name,
            "whoami" | "memory_get" | "memory_search" | "task_list" | "consensus_status"
        );
        assert_eq!(read_only, expected_read_only, "{name}: readOnlyHint");
        let expected_destructive = matches!(name, "memory_store" | "memory_delete" | "task_update");
        assert_eq!(destructive, expected_destructive, "{name}: destructiveHint");
        assert_eq!(a["openWorldHint"], false, "{name}");
    }
    // Required arguments are declared as such.
    let store = tools.as_array().unwrap().iter().find(|t| t["name"] == "memory_store").unwrap();
    assert_eq!(store["inputSchema"]["required"], json!(["key", "value"]));
    assert_eq!(swarm.finish().code, 0);
}

#[test]
fn the_2026_revision_is_served_without_an_initialize_handshake() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut s = Mcp::start(&env, &ann, &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "swarm-memory-tests", "version": "1" },
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let d = s.request("server/discover", json!({ "_meta": meta }));
    let versions = d["result"]["supportedVersions"].as_array().unwrap();
    assert!(
        versions.contains(&json!("2025-11-25")) && versions.contains(&json!("2026-07-28")),
        "{d}"
    );
    let tools = s.request("tools/list", json!({ "_meta": meta }))["result"]["tools"].clone();
    assert_eq!(names(&tools), CORE);
    let r = s.request("tools/call", json!({ "_meta": meta, "name": "whoami", "arguments": {} }));
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert_eq!(r["result"]["structuredContent"]["agent"], "ann");
    // A request of that revision without its metadata is a protocol error.
    let r = s.request("tools/call", json!({ "name": "whoami", "arguments": {} }));
    assert!(r["error"]["code"].is_i64(), "{r}");
    assert_eq!(s.finish().code, 0);
}

#[test]
fn bad_credentials_stop_the_server_before_it_serves() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |c: &mut Command| {
        let out = c.stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
        assert!(out.stdout.is_empty(), "nothing may reach stdout: {:?}", out.stdout);
        (out.status.code().unwrap_or(-1), errors[0].to_owned())
    };
    let wrong = Agent { id: ann.id.clone(), token: format!("{}x", ann.token) };
    let (code, line) = run(mcp_command(&env, &[])
        .env("SWARM_AGENT_ID", &wrong.id)
        .env("SWARM_AGENT_TOKEN", &wrong.token));
    assert_eq!(code, 4);
    assert!(line.contains("authentication failed for agent ann"), "{line}");
    assert!(!line.contains(&wrong.token), "the token must not be echoed: {line}");
    let (code, line) = run(&mut mcp_command(&env, &[]));
    assert_eq!(code, 4);
    assert!(line.contains("SWARM_AGENT_ID and SWARM_AGENT_TOKEN"), "{line}");
    // The identity comes from the environment only, not from the command line.
    let (code, line) = run(&mut mcp_command(&env, &["--agent", "ann", "--token", &ann.token]));
    assert_eq!(code, 4, "{line}");
    let (code, line) = run(mcp_command(&env, &["--token", "smt_other"])
        .env("SWARM_AGENT_ID", &ann.id)
        .env("SWARM_AGENT_TOKEN", &ann.token));
    assert_eq!(code, 2);
    assert!(line.contains("only from SWARM_AGENT_ID and SWARM_AGENT_TOKEN"), "{line}");
    // A missing database is not created.
    let (code, line) = run(mcp_command(&env, &["--db", "nowhere.db"])
        .env("SWARM_AGENT_ID", &ann.id)
        .env("SWARM_AGENT_TOKEN", &ann.token));
    assert_eq!(code, 3);
    assert!(line.contains("run `swarm-memory init` first"), "{line}");
    assert!(!env.path("nowhere.db").exists());
    // A suspended agent's server does not start either.
    env.run(&["agent", "update", "ann", "--status", "suspended"]).ok();
    let (code, _) = run(mcp_command(&env, &[])
        .env("SWARM_AGENT_ID", &ann.id)
        .env("SWARM_AGENT_TOKEN", &ann.token));
    assert_eq!(code, 4);
}

#[test]
fn memory_tools_work_and_fail_in_ways_a_model_can_act_on() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut s = Mcp::start(&env, &ann, &[]);
    s.initialize();

    let me = s.ok("whoami", json!({}));
    assert_eq!(me["agent"], "ann");
    assert_eq!(me["swarm"], "default");
    assert_eq!(me["permissions"]["memory"]["write"], json!(["private", "team", "swarm", "public"]));
    assert_eq!(me["encrypted_levels"], json!(["private", "team"]));
    assert_eq!(me["server"]["profile"], "core");
    assert_eq!(me["database"], env.db().canonicalize().unwrap().display().to_string());

    // Text, JSON, JSON given as text.
    let w = s.ok("memory_store", json!({ "key": "greeting", "value": "hello" }));
    assert_eq!((w["created"].clone(), w["namespace"].clone()), (json!(true), json!("default")));
    let v1 = w["version"].as_u64().unwrap();
    let r = s.ok("memory_get", json!({ "key": "greeting" }));
    assert_eq!((r["value"].clone(), r["type"].clone()), (json!("hello"), json!("text")));
    assert_eq!((r["level"].clone(), r["encrypted"].clone()), (json!("private"), json!(true)));
    assert_eq!(r["version"], v1);
    assert_eq!(r["truncated"], false);
    s.ok("memory_store", json!({ "key": "plan", "namespace": "work", "value": { "steps": [1, 2] }, "level": "swarm", "tags": ["p"] }));
    let r = s.ok("memory_get", json!({ "key": "plan", "namespace": "work" }));
    assert_eq!(r["value"], json!({ "steps": [1, 2] }));
    assert_eq!((r["type"].clone(), r["tags"].clone()), (json!("json"), json!(["p"])));
    s.ok("memory_store", json!({ "key": "cfg", "value": "{\"a\": true}", "type": "json" }));
    assert_eq!(s.ok("memory_get", json!({ "key": "cfg" }))["value"], json!({ "a": true }));
    let (kind, text) =
        s.err("memory_store", json!({ "key": "cfg", "value": "{nope", "type": "json" }));
    assert_eq!(kind, "invalid_input");
    assert!(text.contains("not valid JSON"), "{text}");
    let (kind, _) = s.err("memory_store", json!({ "key": "n", "value": 5, "type": "text" }));
    assert_eq!(kind, "invalid_input");

    // Compare-and-set.
    let (kind, text) =
        s.err("memory_store", json!({ "key": "greeting", "value": "x", "if_version": v1 + 1000 }));
    assert_eq!(kind, "conflict");
    assert!(text.contains(&format!("found version {v1}")), "{text}");
    let w2 = s.ok("memory_store", json!({ "key": "greeting", "value": "hi", "if_version": v1 }));
    assert!(w2["version"].as_u64().unwrap() > v1);
    let (kind, _) =
        s.err("memory_store", json!({ "key": "greeting", "value": "x", "if_absent": true }));
    assert_eq!(kind, "conflict");
    let (kind, _) = s.err(
        "memory_store",
        json!({ "key": "k", "value": "x", "if_absent": true, "if_version": 3 }),
    );
    assert_eq!(kind, "invalid_input");
    assert_eq!(s.ok("memory_get", json!({ "key": "greeting" }))["value"], "hi");

    // Invalid input is named precisely.
    for (args, needle) in [
        (json!({ "key": "k", "value": "v", "namespace": "bad ns" }), "namespace"),
        (json!({ "value": "v" }), "missing field `key`"),
        (json!({ "key": "k", "value": "v", "if_verison": 3 }), "if_verison"),
        (json!({ "key": "k", "value": "v", "level": "secret" }), "unknown variant"),
        (json!({ "key": "k", "value": "v", "level": "team" }), "team"),
        (json!({ "key": "k", "value": "v", "ttl_seconds": 0 }), "at least 1 second"),
        (json!({ "key": "", "value": "v" }), "key must not be empty"),
    ] {
        let (kind, text) = s.err("memory_store", args.clone());
        assert_eq!(kind, "invalid_input", "{args}: {text}");
        assert!(text.contains(needle), "{args}: {text}");
    }
    let (kind, text) = s.err("memory_search", json!({ "limit": 51 }));
    assert_eq!(kind, "invalid_input");
    assert!(text.contains("1 to 50"), "{text}");
    let (kind, _) = s.err("memory_search", json!({ "limit": "ten" }));
    assert_eq!(kind, "invalid_input");
    let (kind, text) = s.err("memory_search", json!({ "cursor": "garbage!" }));
    assert_eq!(kind, "invalid_input");
    assert!(text.contains("next_cursor"), "{text}");

    // Listing and searching.
    s.ok("memory_store", json!({ "key": "user:1", "namespace": "work", "value": "Alice likes tea", "level": "swarm", "tags": ["people"] }));
    s.ok("memory_store", json!({ "key": "user:2", "namespace": "work", "value": "Bob likes coffee", "level": "swarm" }));
    s.ok("memory_store", json!({ "key": "secret", "namespace": "work", "value": "Carol likes tea", "level": "private" }));
    let l = s.ok("memory_search", json!({ "namespace": "work", "prefix": "user:" }));
    assert_eq!(l["mode"], "list");
    let keys: Vec<&str> =
        l["records"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["user:1", "user:2"]);
    assert!(l["records"][0].get("value").is_none(), "a listing carries no values");
    let l = s.ok("memory_search", json!({ "tag": "people" }));
    assert_eq!(l["records"].as_array().unwrap().len(), 1);
    let l = s.ok("memory_search", json!({ "namespace": "work", "limit": 1 }));
    assert_eq!(l["records"].as_array().unwrap().len(), 1);
    let cursor = l["next_cursor"].as_str().unwrap().to_owned();
    let l2 = s.ok("memory_search", json!({ "namespace": "work", "limit": 1, "cursor": cursor }));
    assert_ne!(l2["records"][0]["key"], l["records"][0]["key"]);
    let f = s.ok("memory_search", json!({ "query": "LIKES tea" }));
    assert_eq!(f["mode"], "search");
    let hits: Vec<&str> =
        f["hits"].as_array().unwrap().iter().map(|h| h["key"].as_str().unwrap()).collect();
    assert_eq!(hits, ["user:1"], "the private record is encrypted, so it is not searched");
    assert_eq!(f["hits"][0]["snippet"], "Alice likes tea");
    assert!(f["searched"].as_str().unwrap().contains("plaintext"));
    assert_eq!(f["next_cursor"], Value::Null);

    // Long values come in pieces.
    let long: String = (0..3000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    s.ok("memory_store", json!({ "key": "long", "value": long }));
    let p1 = s.ok("memory_get", json!({ "key": "long", "max_chars": 1000 }));
    assert_eq!(p1["truncated"], true);
    assert_eq!(p1["total_chars"], 3000);
    let mut text = p1["value_text"].as_str().unwrap().to_owned();
    let mut next = p1["next_offset"].as_u64();
    while let Some(offset) = next {
        let p = s.ok("memory_get", json!({ "key": "long", "max_chars": 1000, "offset": offset }));
        text.push_str(p["value_text"].as_str().unwrap());
        next = p["next_offset"].as_u64();
    }
    assert_eq!(text, long);
    let (kind, _) = s.err("memory_get", json!({ "key": "long", "offset": 5000 }));
    assert_eq!(kind, "invalid_input");
    let (kind, _) = s.err("memory_get", json!({ "key": "long", "max_chars": 5 }));
    assert_eq!(kind, "invalid_input");

    // Bytes (written with the CLI) come back as base64.
    env.run_as(&ann, &["set", "blob", "AP8=", "--type", "bytes"]).ok();
    let b = s.ok("memory_get", json!({ "key": "blob" }));
    assert_eq!((b["value"].clone(), b["encoding"].clone()), (json!("AP8="), json!("base64")));

    // Deleting, with and without a version.
    let v = s.ok("memory_get", json!({ "key": "greeting" }))["version"].as_u64().unwrap();
    let (kind, _) = s.err("memory_delete", json!({ "key": "greeting", "if_version": v + 1000 }));
    assert_eq!(kind, "conflict");
    let d = s.ok("memory_delete", json!({ "key": "greeting", "if_version": v }));
    assert_eq!(d["deleted"], true);
    let (kind, absent) = s.err("memory_get", json!({ "key": "greeting" }));
    assert_eq!(kind, "not_found");
    assert!(absent.contains("does not exist, has expired, or is not visible"), "{absent}");
    let (kind, _) = s.err("memory_delete", json!({ "key": "greeting" }));
    assert_eq!(kind, "not_found");

    // The CLI sees what the server wrote: the same database.
    assert_eq!(
        env.run_as(&ann, &["get", "plan", "--namespace", "work"]).ok().out(),
        r#"{"steps":[1,2]}"#
    );
    assert_eq!(s.finish().code, 0);
}

#[test]
fn a_running_server_goes_on_after_rotate_key_in_another_process() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut s = Mcp::start(&env, &ann, &[]);
    s.initialize();
    s.ok("memory_store", json!({ "key": "before", "value": "sealed with key 1" }));
    // Another process rotates: key 2 is appended to the key file and every sealed row is
    // re-sealed under it, while the server keeps running.
    let doc = env.run(&["rotate-key", "--json"]).ok().json();
    assert_eq!(doc["active_key_id"], 2);
    let r = s.ok("memory_get", json!({ "key": "before" }));
    assert_eq!(
        (r["value"].clone(), r["encrypted"].clone()),
        (json!("sealed with key 1"), json!(true))
    );
    s.ok("memory_store", json!({ "key": "after", "value": "sealed with key 2" }));
    // Nothing, old or new, is sealed with key 1 any more.
    let doctor = env.run(&["doctor", "--json"]).ok().json();
    assert_eq!(doctor["key"]["active"], 2);
    let keys: Vec<u64> = doctor["key"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_u64().unwrap())
        .collect();
    assert_eq!(keys, [2], "{doctor}");
    assert_eq!(s.ok("memory_get", json!({ "key": "after" }))["value"], "sealed with key 2");
    assert_eq!(s.finish().code, 0);
}

#[test]
fn task_tools_claim_atomically_and_fence_stale_holders() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let (mut a, mut b) = swarm_servers(&env, &ann, &ben);
    let t = a.ok("task_create", json!({ "title": "write docs", "priority": 8, "description": "d".repeat(500), "metadata": { "k": 1 } }))["task"].clone();
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!((t["status"].clone(), t["level"].clone()), (json!("pending"), json!("swarm")));
    assert_eq!(t["metadata"], json!({ "k": 1 }));
    a.ok("task_create", json!({ "title": "later", "priority": 1, "id": "t-later" }));
    let (kind, _) = a.err("task_create", json!({ "title": "bad", "priority": 11 }));
    assert_eq!(kind, "invalid_input");
    let (kind, _) = a.err("task_create", json!({ "title": "dup", "id": "t-later" }));
    assert_eq!(kind, "invalid_input");

    let listed = b.ok("task_list", json!({ "ready_only": true }))["tasks"].clone();
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str(), "t-later"], "highest priority first");
    assert!(
        listed[0]["description"].as_str().unwrap().chars().count() <= 200,
        "listings clip descriptions"
    );

    let c = a.ok("task_update", json!({ "id": id, "action": "claim", "lease_seconds": 600 }));
    let token = c["fencing_token"].as_u64().unwrap();
    assert_eq!(c["task"]["status"], "claimed");
    assert_eq!(c["task"]["lease"]["holder"], "ann");
    let (kind, text) = b.err("task_update", json!({ "id": id, "action": "claim" }));
    assert_eq!(kind, "conflict", "{text}");
    assert!(text.contains("claimed by ann"), "{text}");
    let (kind, _) = b.err(
        "task_update",
        json!({ "id": id, "action": "progress", "progress": 10, "fencing_token": token }),
    );
    assert_eq!(kind, "conflict", "only the holder reports progress");
    let (kind, text) =
        a.err("task_update", json!({ "id": id, "action": "progress", "progress": 10 }));
    assert_eq!(kind, "invalid_input");
    assert!(text.contains("fencing_token"), "{text}");
    let (kind, _) = a.err(
        "task_update",
        json!({ "id": id, "action": "progress", "progress": 10, "fencing_token": token + 1 }),
    );
    assert_eq!(kind, "conflict");
    let (kind, _) = a.err(
        "task_update",
        json!({ "id": id, "action": "release", "progress": 10, "fencing_token": token }),
    );
    assert_eq!(kind, "invalid_input", "progress belongs to the progress action");
    let p = a.ok(
        "task_update",
        json!({ "id": id, "action": "progress", "progress": 40, "fencing_token": token }),
    );
    assert_eq!(
        (p["task"]["status"].clone(), p["task"]["progress"].clone()),
        (json!("in_progress"), json!(40))
    );
    // Claiming again renews the lease, keeping the token.
    let r = a.ok("task_update", json!({ "id": id, "action": "claim" }));
    assert_eq!(r["fencing_token"], token);
    let mine = a.ok("task_list", json!({ "assignee": "me" }))["tasks"].clone();
    assert_eq!(mine, json!([]), "claiming does not assign");
    let done = a.ok(
        "task_update",
        json!({ "id": id, "action": "complete", "fencing_token": token, "result": { "pages": 3 } }),
    );
    assert_eq!(done["task"]["status"], "completed");
    assert_eq!(done["task"]["result"], json!({ "pages": 3 }));
    assert_eq!(done["ready"], json!([]));
    let completed = b.ok("task_list", json!({ "status": "completed" }))["tasks"].clone();
    assert_eq!(completed[0]["id"], id.as_str());

    // Fail and release.
    let c = b.ok("task_update", json!({ "id": "t-later", "action": "claim" }));
    let tb = c["fencing_token"].as_u64().unwrap();
    let (kind, _) =
        b.err("task_update", json!({ "id": "t-later", "action": "fail", "fencing_token": tb }));
    assert_eq!(kind, "invalid_input", "fail needs a reason");
    let r =
        b.ok("task_update", json!({ "id": "t-later", "action": "release", "fencing_token": tb }));
    assert_eq!(r["task"]["status"], "pending");
    let c = a.ok("task_update", json!({ "id": "t-later", "action": "claim" }));
    assert!(c["fencing_token"].as_u64().unwrap() > tb, "every claim raises the token");
    let ta = c["fencing_token"].as_u64().unwrap();
    let (kind, _) =
        b.err("task_update", json!({ "id": "t-later", "action": "release", "fencing_token": tb }));
    assert_eq!(kind, "conflict", "a stale holder is fenced off");
    let f = a.ok(
        "task_update",
        json!({ "id": "t-later", "action": "fail", "fencing_token": ta, "reason": "no time" }),
    );
    assert_eq!(f["task"]["status"], "failed");
    let (kind, _) = a.err("task_update", json!({ "id": "nope", "action": "claim" }));
    assert_eq!(kind, "not_found");
    let (kind, _) = a.err("task_update", json!({ "id": id, "action": "explode" }));
    assert_eq!(kind, "invalid_input");
    assert_eq!(a.finish().code, 0);
    assert_eq!(b.finish().code, 0);
}

#[test]
fn event_tools_poll_from_a_durable_cursor() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let (mut a, mut b) = swarm_servers(&env, &ann, &ben);
    // Nothing yet: a bounded wait returns empty-handed.
    let p = b.ok("event_poll", json!({ "wait_ms": 50 }));
    assert_eq!(p["events"], json!([]));
    let e = a.ok(
        "event_publish",
        json!({ "type": "build.done", "payload": { "ok": true }, "priority": 7 }),
    );
    let seq = e["seq"].as_u64().unwrap();
    assert_eq!(e["level"], "swarm");
    a.ok("event_publish", json!({ "type": "note", "payload": "plain text payload" }));
    let big = "x".repeat(10_000);
    a.ok("event_publish", json!({ "type": "note", "payload": { "blob": big } }));
    let (kind, _) = a.err("event_publish", json!({ "type": "bad", "priority": 11 }));
    assert_eq!(kind, "invalid_input");
    let (kind, _) = a.err("event_publish", json!({ "type": "bad", "parent": 999_999 }));
    assert_eq!(kind, "not_found");

    let p = b.ok("event_poll", json!({ "wait_ms": 5000 }));
    let events = p["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{p}");
    assert_eq!(events[0]["seq"], seq);
    assert_eq!(events[0]["source"], "ann");
    assert_eq!(events[0]["payload"], json!({ "ok": true }));
    assert_eq!(events[1]["payload"], "plain text payload");
    assert_eq!(events[2]["payload"]["truncated"], true, "a large payload is previewed");
    assert_eq!(p["consumer"], "mcp");
    // The cursor was remembered: the next poll has nothing new.
    assert_eq!(b.ok("event_poll", json!({}))["events"], json!([]));
    // Another consumer, or an explicit position, reads again.
    assert_eq!(
        b.ok("event_poll", json!({ "consumer": "audit" }))["events"].as_array().unwrap().len(),
        3
    );
    let p = b.ok("event_poll", json!({ "since": seq, "type": "note", "limit": 1 }));
    assert_eq!(p["events"].as_array().unwrap().len(), 1);
    assert_eq!(p["more"], true);
    // A poll waiting for the next event gets one published by another server meanwhile.
    let id = b.send_request(
        "tools/call",
        json!({ "name": "event_poll", "arguments": { "wait_ms": 20_000 } }),
    );
    a.ok("event_publish", json!({ "type": "late" }));
    let p = b.response(id)["result"]["structuredContent"].clone();
    assert_eq!(p["events"][0]["type"], "late", "{p}");
    assert_eq!(p["events"].as_array().unwrap().len(), 1);
    let (kind, _) = b.err("event_poll", json!({ "wait_ms": 60_000 }));
    assert_eq!(kind, "invalid_input");
    let (kind, _) = b.err("event_poll", json!({ "consumer": "bad name!" }));
    assert_eq!(kind, "invalid_input");
    assert_eq!(a.finish().code, 0);
    assert_eq!(b.finish().code, 0);
}

#[test]
fn consensus_tools_count_one_vote_per_agent() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let (mut a, mut b) = swarm_servers(&env, &ann, &ben);
    let r = a.ok(
        "consensus_propose",
        json!({ "target_id": "release-1.4", "description": "ship it?", "quorum": 2 }),
    )["round"]
        .clone();
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!((r["status"].clone(), r["strategy"].clone()), (json!("open"), json!("majority")));
    let (kind, _) = a.err("consensus_propose", json!({ "target_id": "x", "threshold": 2.0 }));
    assert_eq!(kind, "invalid_input");
    let v = a.ok("consensus_vote", json!({ "id": id, "approve": true, "reason": "tests pass" }));
    assert_eq!(v["decided_now"], false);
    let (kind, _) = a.err("consensus_vote", json!({ "id": id, "approve": false }));
    assert_eq!(kind, "conflict", "one vote per agent");
    let (kind, _) =
        b.err("consensus_vote", json!({ "id": id, "approve": true, "confidence": 1.5 }));
    assert_eq!(kind, "invalid_input");
    let v = b.ok("consensus_vote", json!({ "id": id, "approve": true, "confidence": 0.8 }));
    assert_eq!(v["decided_now"], true);
    assert_eq!(v["round"]["status"], "achieved");
    assert_eq!(v["round"]["tally"]["for"], 2);
    let s = b.ok("consensus_status", json!({ "id": id }));
    let voters: Vec<&str> =
        s["votes"].as_array().unwrap().iter().map(|v| v["agent"].as_str().unwrap()).collect();
    assert_eq!(voters.len(), 2);
    assert!(voters.contains(&"ann") && voters.contains(&"ben"));
    let l = b.ok("consensus_status", json!({ "status": "achieved" }));
    assert_eq!(l["rounds"][0]["id"], id.as_str());
    assert_eq!(b.ok("consensus_status", json!({ "status": "open" }))["rounds"], json!([]));
    let (kind, _) = b.err("consensus_status", json!({ "id": "cs_nope" }));
    assert_eq!(kind, "not_found");
    let (kind, _) = b.err("consensus_vote", json!({ "id": "cs_nope", "approve": true }));
    assert_eq!(kind, "not_found");
    assert_eq!(a.finish().code, 0);
    assert_eq!(b.finish().code, 0);
}

#[test]
fn a_line_that_is_not_json_gets_a_parse_error_and_the_session_goes_on() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut s = Mcp::start(&env, &ann, &[]);
    {
        let stdin = s.stdin.as_mut().unwrap();
        stdin
            .write_all(b"this is not json\n{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\"\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    for _ in 0..2 {
        let m = s.next_message();
        assert_eq!(m["jsonrpc"], "2.0", "{m}");
        assert!(m["id"].is_null(), "{m}");
        assert_eq!(m["error"]["code"], -32700, "{m}");
        assert!(m["error"]["message"].as_str().unwrap().starts_with("Parse error"), "{m}");
    }
    // The same server still answers a proper handshake and calls.
    let init = s.initialize();
    assert_eq!(init["serverInfo"]["name"], "swarm-memory");
    s.ok("whoami", json!({}));
    let done = s.finish();
    assert_eq!(done.code, 0, "{}", done.stderr);
}

#[test]
fn stdout_carries_only_json_rpc_even_with_trace_logging() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let mut c = mcp_command(&env, &["--tools", "swarm"]);
    c.env("SWARM_AGENT_ID", &ann.id).env("SWARM_AGENT_TOKEN", &ann.token).env("RUST_LOG", "trace");
    let mut s = Mcp::spawn(c);
    s.initialize();
    s.request("tools/list", json!({}));
    s.ok("whoami", json!({}));
    s.ok("memory_store", json!({ "key": "k", "value": "v", "level": "swarm" }));
    s.ok("memory_search", json!({ "query": "v" }));
    s.err("memory_get", json!({ "key": "absent" }));
    s.ok("event_publish", json!({ "type": "t" }));
    s.ok("event_poll", json!({}));
    s.request("tools/call", json!({ "name": "nope", "arguments": {} }));
    s.request("no/such/method", json!({}));
    let done = s.finish();
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(done.stdout.len() >= 10, "{:?}", done.stdout);
    for line in &done.stdout {
        let m: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(m["jsonrpc"], "2.0", "{line}");
        assert!(
            m.get("result").is_some() || m.get("error").is_some() || m.get("method").is_some(),
            "{line}"
        );
    }
    assert!(done.stderr.contains("TRACE") || done.stderr.contains("DEBUG"), "logs went to stderr");
    assert!(!done.stderr.contains(&ann.token), "the token is never logged");
}

#[test]
fn a_second_agent_sees_nothing_it_may_not_and_revocation_applies_at_the_next_call() {
    let env = Env::init();
    env.run(&["team", "create", "--name", "red", "--id", "red"]).ok();
    let ann = env.register("ann", &["--team", "red"]);
    let ben = env.register("ben", &[]);
    let (mut a, mut b) = swarm_servers(&env, &ann, &ben);
    for (key, level) in [("mine", "private"), ("ours", "team"), ("all", "swarm")] {
        a.ok("memory_store", json!({ "key": key, "value": format!("needle {key}"), "level": level, "namespace": "n" }));
    }
    let t =
        a.ok("task_create", json!({ "title": "private plan", "level": "private" }))["task"]["id"]
            .clone();
    let tt =
        a.ok("task_create", json!({ "title": "team plan", "level": "team" }))["task"]["id"].clone();
    a.ok(
        "event_publish",
        json!({ "type": "secret", "level": "private", "payload": { "needle": 1 } }),
    );
    a.ok("event_publish", json!({ "type": "team-news", "level": "team" }));
    a.ok("event_publish", json!({ "type": "news", "level": "swarm" }));
    let round = a.ok("consensus_propose", json!({ "target_id": "hidden", "level": "private" }))["round"]["id"].clone();

    // Hidden and absent read the same, word for word but the key.
    let (kind, hidden) = b.err("memory_get", json!({ "key": "mine", "namespace": "n" }));
    let (_, absent) = b.err("memory_get", json!({ "key": "none", "namespace": "n" }));
    assert_eq!(kind, "not_found");
    assert_eq!(hidden.replace("mine", "KEY"), absent.replace("none", "KEY"));
    let (kind, _) = b.err("memory_get", json!({ "key": "ours", "namespace": "n" }));
    assert_eq!(kind, "not_found");
    assert_eq!(
        b.ok("memory_get", json!({ "key": "all", "namespace": "n" }))["value"],
        "needle all"
    );
    let listed = b.ok("memory_search", json!({ "namespace": "n" }))["records"].clone();
    let keys: Vec<&str> =
        listed.as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["all"]);
    let found = b.ok("memory_search", json!({ "query": "needle" }));
    let keys: Vec<&str> =
        found["hits"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["all"]);
    let (kind, _) = b.err("memory_delete", json!({ "key": "mine", "namespace": "n" }));
    assert_eq!(kind, "not_found");
    let (kind, _) =
        b.err("memory_store", json!({ "key": "mine", "namespace": "n", "value": "overwritten" }));
    assert_eq!(kind, "permission_denied");
    assert_eq!(
        a.ok("memory_get", json!({ "key": "mine", "namespace": "n" }))["value"],
        "needle mine"
    );
    // Tasks, events, consensus.
    let tasks = b.ok("task_list", json!({}))["tasks"].clone();
    assert_eq!(tasks, json!([]), "neither the private nor the team task");
    for id in [&t, &tt] {
        let (kind, _) = b.err("task_update", json!({ "id": id, "action": "claim" }));
        assert_eq!(kind, "not_found");
    }
    let types: Vec<String> = b.ok("event_poll", json!({}))["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(!types.iter().any(|t| t == "secret" || t == "team-news"), "{types:?}");
    assert!(types.contains(&"news".to_owned()));
    let (kind, _) = b.err("consensus_status", json!({ "id": round }));
    assert_eq!(kind, "not_found");
    let (kind, _) = b.err("consensus_vote", json!({ "id": round, "approve": true }));
    assert_eq!(kind, "not_found");
    assert!(
        b.ok("consensus_status", json!({}))["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != round)
    );
    // ann, in the team, sees the team task.
    assert_eq!(a.ok("task_list", json!({}))["tasks"].as_array().unwrap().len(), 2);

    // A revoke made with the command line, while ben's server runs, applies to its next
    // call: the default grants are at the public level, so without them the swarm record is
    // out of reach.
    env.run(&["revoke", "ben", "memory", "public"]).ok();
    let (kind, _) = b.err("memory_get", json!({ "key": "all", "namespace": "n" }));
    assert_eq!(kind, "not_found");
    assert_eq!(b.ok("memory_search", json!({ "query": "needle" }))["hits"], json!([]));
    assert_eq!(b.ok("whoami", json!({}))["permissions"]["memory"]["read"], json!([]));
    // A suspension stops every call; reactivation lets it act again.
    env.run(&["agent", "update", "ben", "--status", "suspended"]).ok();
    let (kind, text) = b.err("whoami", json!({}));
    assert_eq!(kind, "unauthenticated", "{text}");
    let (kind, _) = b.err("task_list", json!({}));
    assert_eq!(kind, "unauthenticated");
    env.run(&["agent", "update", "ben", "--status", "active"]).ok();
    b.ok("whoami", json!({}));
    // A rotated token: the server's own token no longer works.
    env.run(&["agent", "rotate-token", "ben"]).ok();
    let (kind, _) = b.err("whoami", json!({}));
    assert_eq!(kind, "unauthenticated");
    // Removal, for ann, mid-session.
    a.ok("whoami", json!({}));
    env.run(&["agent", "remove", "ann"]).ok();
    let (kind, _) = a.err("memory_get", json!({ "key": "mine", "namespace": "n" }));
    assert_eq!(kind, "unauthenticated");
    assert_eq!(a.finish().code, 0);
    assert_eq!(b.finish().code, 0);
}

#[test]
fn several_servers_on_one_database_lose_no_update() {
    let env = Env::init();
    let agents: Vec<Agent> = (0..2).map(|i| env.register(&format!("w{i}"), &[])).collect();
    // Four server processes (two per agent), each adding 1 twenty times to one shared
    // record with a compare-and-set loop.
    const PER_SERVER: u64 = 20;
    let mut first = Mcp::start(&env, &agents[0], &[]);
    first.initialize();
    first.ok("memory_store", json!({ "key": "counter", "value": 0, "level": "swarm" }));
    assert_eq!(first.finish().code, 0);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let mut s = Mcp::start(&env, &agents[i % 2], &[]);
            std::thread::spawn(move || {
                s.initialize();
                for _ in 0..PER_SERVER {
                    // Read, add one, write only if nobody wrote since; on a conflict, again.
                    loop {
                        let r = s.ok("memory_get", json!({ "key": "counter" }));
                        let (n, v) = (r["value"].as_u64().unwrap(), r["version"].as_u64().unwrap());
                        let w = s.call(
                            "memory_store",
                            json!({ "key": "counter", "value": n + 1, "if_version": v }),
                        );
                        if w["isError"] == false {
                            break;
                        }
                        // A lost race, never a lock error or anything else.
                        assert_eq!(w["structuredContent"]["error"]["kind"], "conflict", "{w}");
                    }
                }
                let done = s.finish();
                assert_eq!(done.code, 0, "{}", done.stderr);
                assert!(!done.stderr.contains("locked"), "{}", done.stderr);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut check = Mcp::start(&env, &agents[1], &[]);
    check.initialize();
    assert_eq!(check.ok("memory_get", json!({ "key": "counter" }))["value"], 4 * PER_SERVER);
    assert_eq!(check.finish().code, 0);
}

#[test]
fn a_relative_db_is_resolved_once_from_the_starting_directory() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    std::fs::create_dir(env.path("elsewhere")).unwrap();
    let mut c = mcp_command(&env, &["--db", "../swarm-memory.db"]);
    c.current_dir(env.path("elsewhere"))
        .env("SWARM_AGENT_ID", &ann.id)
        .env("SWARM_AGENT_TOKEN", &ann.token);
    let mut s = Mcp::spawn(c);
    s.initialize();
    let me = s.ok("whoami", json!({}));
    let expected = env.db().canonicalize().unwrap();
    assert_eq!(me["database"], expected.display().to_string());
    assert!(std::path::Path::new(me["database"].as_str().unwrap()).is_absolute());
    s.ok("memory_store", json!({ "key": "where", "value": "here" }));
    assert_eq!(s.finish().code, 0);
    // The same database the command line uses from the database's own directory, and no
    // new one beside the server's working directory.
    assert_eq!(env.run_as(&ann, &["get", "where"]).ok().out(), "here");
    assert!(std::fs::read_dir(env.path("elsewhere")).unwrap().next().is_none());
}

#[test]
fn search_pages_stay_small_over_ten_thousand_records() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    for chunk in 0..10 {
        let mut args: Vec<String> =
            ["mset", "--level", "swarm", "--namespace", "bulk"].map(String::from).to_vec();
        for i in 0..1000 {
            let n = chunk * 1000 + i;
            args.push(format!("record:{n:05}"));
            args.push(format!("needle {n} {}", "lorem ipsum dolor sit amet ".repeat(8)));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        env.run_as(&ann, &refs).ok();
    }
    let mut s = Mcp::start(&env, &ann, &[]);
    s.initialize();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let mut args = json!({ "query": "needle", "limit": 50 });
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let r = s.ok("memory_search", args);
        let line = s.seen.last().unwrap().clone();
        assert!(line.len() < 20_000, "a search page of {} characters", line.len());
        let hits = r["hits"].as_array().unwrap();
        assert!(!hits.is_empty());
        for h in hits {
            assert!(h["snippet"].as_str().unwrap().chars().count() <= 160);
            assert!(seen.insert(h["key"].as_str().unwrap().to_owned()), "a hit repeated");
        }
        cursor = Some(r["next_cursor"].as_str().expect("more pages").to_owned());
    }
    let r = s.ok("memory_search", json!({ "namespace": "bulk", "limit": 50 }));
    assert!(s.seen.last().unwrap().len() < 20_000);
    assert!(!r["records"].as_array().unwrap().is_empty());
    assert!(r["next_cursor"].is_string());
    // A query that matches nothing still answers quickly in bounded pages.
    let r = s.ok("memory_search", json!({ "query": "absent-word" }));
    assert_eq!(r["hits"], json!([]));
    assert!(r["examined"].as_u64().unwrap() <= 2_000, "{r}");
    assert!(r["next_cursor"].is_string(), "the scan budget ran out before the end: {r}");
    assert_eq!(s.finish().code, 0);
}

#[test]
fn search_cursors_are_sealed_to_the_server_the_agent_and_the_query() {
    use base64::Engine as _;
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    let mut a = Mcp::start(&env, &ann, &[]);
    a.initialize();
    a.ok(
        "memory_store",
        json!({ "key": "open-1", "namespace": "n", "value": "needle one", "level": "swarm" }),
    );
    a.ok(
        "memory_store",
        json!({ "key": "open-2", "namespace": "n", "value": "needle two", "level": "swarm" }),
    );
    a.ok(
        "memory_store",
        json!({ "key": "secret-plan", "namespace": "n", "value": "needle", "level": "private" }),
    );
    let first = a.ok("memory_search", json!({ "query": "needle", "limit": 1 }));
    assert_eq!(first["hits"][0]["key"], "open-1");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // Opaque: no key, no namespace, in the text or in its decoded bytes.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    for name in ["open-1", "secret-plan", "n\u{1f}"] {
        assert!(!cursor.contains(name), "{cursor}");
        assert!(!bytes.windows(name.len()).any(|w| w == name.as_bytes()), "{cursor}");
    }
    // It continues the same query for the same agent.
    let next = a.ok("memory_search", json!({ "query": "needle", "limit": 1, "cursor": cursor }));
    assert_eq!(next["hits"][0]["key"], "open-2");

    // Anything else is refused, with one message.
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("n\u{1f}open-1");
    let mut refusals = vec![
        a.err("memory_search", json!({ "query": "needle", "cursor": forged })),
        a.err("memory_search", json!({ "query": "needle", "cursor": "garbage!" })),
        a.err("memory_search", json!({ "query": "other words", "cursor": cursor })),
        a.err("memory_search", json!({ "query": "needle", "prefix": "open", "cursor": cursor })),
    ];
    // Another agent's server, and another server of the same agent: another process.
    let mut b = Mcp::start(&env, &ben, &[]);
    b.initialize();
    refusals.push(b.err("memory_search", json!({ "query": "needle", "cursor": cursor })));
    let mut again = Mcp::start(&env, &ann, &[]);
    again.initialize();
    refusals.push(again.err("memory_search", json!({ "query": "needle", "cursor": cursor })));
    for (kind, text) in &refusals {
        assert_eq!(kind, "invalid_input");
        assert_eq!(
            text, "invalid_input: the cursor is not valid here: start the search again",
            "{refusals:?}"
        );
    }
    for s in [a, b, again] {
        assert_eq!(s.finish().code, 0);
    }
}

//! `artifact ...`: versioned content from files and stdin.

use base64::Engine as _;

use crate::support::Env;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[test]
fn put_get_versions_and_list() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let run = |args: &[&str]| env.run_as(&ann, args);
    run(&["task", "create", "--title", "write the spec", "--id", "spec"]).ok();
    std::fs::write(env.path("spec.md"), "# Spec\nv1\n").unwrap();
    let doc = run(&[
        "artifact",
        "put",
        "spec",
        "spec.md",
        "--task",
        "spec",
        "--metadata",
        r#"{"draft": true}"#,
        "--json",
    ])
    .ok()
    .json();
    let v1 = &doc["artifact"];
    assert_eq!(v1["name"], "spec");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["format"], "text/markdown", "guessed from the extension");
    assert_eq!(v1["size"], 10);
    assert_eq!(v1["level"], 1, "private by default");
    assert_eq!(v1["task"], "spec");
    assert_eq!(v1["metadata"]["draft"], true);
    let v1_id = v1["id"].as_str().unwrap().to_owned();

    // Bytes from stdin, a new version chained to the first.
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 10]).collect();
    let r = env.run_as_with_stdin(
        &ann,
        &["artifact", "put", "spec", "-", "--format", "application/x-bin", "--level", "swarm"],
        &bytes,
    );
    assert!(r.ok().stdout.starts_with("stored artifact spec version 2"));

    assert_eq!(run(&["artifact", "get", "spec"]).ok().bytes, bytes, "the newest, byte for byte");
    assert_eq!(run(&["artifact", "get", "spec", "--version", "1"]).ok().stdout, "# Spec\nv1\n");
    assert_eq!(run(&["artifact", "get", &v1_id]).ok().stdout, "# Spec\nv1\n", "by id");
    let doc = run(&["artifact", "get", "spec", "--json"]).ok().json();
    assert_eq!(doc["artifact"]["version"], 2);
    assert_eq!(doc["artifact"]["previous"], v1_id.as_str());
    assert_eq!(B64.decode(doc["content_base64"].as_str().unwrap()).unwrap(), bytes);
    let hash = doc["content_hash"].as_str().unwrap();
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    let r = run(&["artifact", "get", "spec", "--version", "1", "--output", "out.md"]).ok();
    assert!(
        r.stdout.starts_with("wrote 10 bytes of artifact spec version 1 to out.md"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read_to_string(env.path("out.md")).unwrap(), "# Spec\nv1\n");
    let doc = run(&["artifact", "get", "spec", "-o", "out.bin", "--json"]).ok().json();
    assert_eq!(doc["output"], "out.bin");
    assert!(doc.get("content_base64").is_none());
    assert_eq!(std::fs::read(env.path("out.bin")).unwrap(), bytes);

    std::fs::write(env.path("notes.txt"), "n").unwrap();
    run(&["artifact", "put", "notes", "notes.txt"]).ok();
    let list = run(&["artifact", "list", "--json"]).ok().json();
    assert_eq!(list["artifacts"].as_array().unwrap().len(), 3);
    let latest = run(&["artifact", "list", "--latest", "--json"]).ok().json();
    let mut names: Vec<(String, u64)> = latest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["version"].as_u64().unwrap()))
        .collect();
    names.sort();
    assert_eq!(names, [("notes".to_owned(), 1), ("spec".to_owned(), 2)]);
    let named = run(&["artifact", "list", "--name", "spec", "--json"]).ok().json();
    assert_eq!(named["artifacts"].as_array().unwrap().len(), 2);
    let of_task = run(&["artifact", "list", "--task", "spec", "--json"]).ok().json();
    assert_eq!(of_task["artifacts"][0]["id"], v1_id.as_str());
    assert!(run(&["artifact", "list"]).ok().stdout.starts_with("NAME "));
}

#[test]
fn missing_invisible_and_refused_artifacts() {
    let env = Env::init();
    let ann = env.register("ann", &[]);
    let ben = env.register("ben", &[]);
    std::fs::write(env.path("a.txt"), "ann's").unwrap();
    env.run_as(&ann, &["artifact", "put", "diary", "a.txt"]).ok();
    env.run_as(&ann, &["artifact", "put", "x", "no-such-file"])
        .fails(2, "cannot read no-such-file");
    env.run_as(&ann, &["artifact", "put", "x", "a.txt", "--task", "nope"])
        .fails(3, "task nope not found");
    env.run_as(&ann, &["artifact", "put", "x", "a.txt", "--metadata", "1"]).fails(2, "JSON object");
    env.run_as(&ann, &["artifact", "get", "diary", "--version", "9"])
        .fails(3, "artifact diary version 9 not found");

    // Ben cannot see ann's private artifact: it reads like an absent one.
    let hidden = env.run_as(&ben, &["artifact", "get", "diary"]).fails(3, "not found");
    let absent = env.run_as(&ben, &["artifact", "get", "zzzzz"]).fails(3, "not found");
    assert_eq!(
        hidden.error_line().replace("diary", "X"),
        absent.error_line().replace("zzzzz", "X")
    );
    assert_eq!(hidden.stdout, "");
    let list = env.run_as(&ben, &["artifact", "list", "--json"]).ok().json();
    assert_eq!(list["artifacts"], serde_json::json!([]));
    // Writing under the name is refused as a memory key held by a hidden record is: the
    // name is taken, nothing of what holds it (a second chain would let ben pass his
    // version off as ann's newest).
    std::fs::write(env.path("b.txt"), "ben's").unwrap();
    env.run_as(&ben, &["artifact", "put", "diary", "b.txt"])
        .fails(4, "the name is held by an artifact you cannot access");
    let put = env.run_as(&ben, &["artifact", "put", "never-used", "b.txt", "--json"]).ok().json();
    assert_eq!(put["artifact"]["version"], 1);
    assert_eq!(env.run_as(&ann, &["artifact", "get", "diary"]).ok().stdout, "ann's");
    env.run(&["artifact", "list"]).fails(4, "--agent ID and --token TOKEN");
}

//! Full-text search: only what the principal can see and what is stored in plaintext is
//! searched, every call does bounded work, and its cursor resumes where it stopped.

use std::sync::Arc;
use std::time::Duration;

use swarm_acl::{AclLevel, Action, Identity, ResourceType, Timestamp};
use swarm_store::{
    ManualClock, Namespace, SearchPage, SearchQuery, SetOptions, Store, StoreError, Value,
};

use crate::fixtures::{Env, T0, key, raw, swarm};

fn at(level: AclLevel) -> SetOptions {
    SetOptions::new().level(level)
}

fn query(text: &str) -> SearchQuery {
    SearchQuery::new(swarm("s1"), text).unwrap()
}

fn keys(page: &SearchPage) -> Vec<String> {
    page.hits.iter().map(|h| format!("{}/{}", h.namespace, h.key)).collect()
}

/// Follows the cursor to the end and returns every hit key and how many calls it took.
fn search_all(store: &Store, who: &Identity, q: SearchQuery) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let mut calls = 0;
    let mut page = store.search(who, &q).unwrap();
    loop {
        calls += 1;
        found.extend(keys(&page));
        match page.next.clone() {
            Some(cursor) => page = store.search(who, &q.clone().after(cursor)).unwrap(),
            None => return (found, calls),
        }
        assert!(calls < 10_000, "the cursor never ended");
    }
}

#[test]
fn only_visible_plaintext_records_are_searched() {
    let env = Env::new();
    let red = env.team("red", "s1");
    let ann = env.agent("ann", "s1", &[&red]);
    let mate = env.agent("mate", "s1", &[&red]);
    let peer = env.agent("peer", "s1", &[]);
    let far = env.agent("far", "s2", &[]);
    let put = |k: &str, v: &str, l: AclLevel| {
        env.store.set(&ann, &key("s1", "notes", k), Value::from(v), &at(l)).unwrap();
    };
    put("private", "the needle is private", AclLevel::Private);
    put("team", "the needle is for the team", AclLevel::Team);
    put("swarm", "the needle is for the swarm", AclLevel::Swarm);
    put("public", "the needle is public", AclLevel::Public);
    put("other", "nothing to see here", AclLevel::Swarm);

    // Private and team records are encrypted by default: never opened by search, even for
    // their owner (get still reads them).
    let page = env.store.search(&ann, &query("needle")).unwrap();
    assert_eq!(keys(&page), ["notes/public", "notes/swarm"]);
    assert_eq!(page.next, None);
    assert_eq!(page.examined, 3, "the three plaintext records the owner can see");
    assert_eq!(keys(&env.store.search(&mate, &query("needle")).unwrap()), keys(&page));
    assert_eq!(keys(&env.store.search(&peer, &query("needle")).unwrap()), keys(&page));
    // Another swarm's agent sees only the public record of s1.
    let page = env.store.search(&far, &query("needle")).unwrap();
    assert_eq!(keys(&page), ["notes/public"]);
    assert_eq!(page.examined, 1, "invisible records are not even examined");
    let hit = &page.hits[0];
    assert_eq!(hit.level, AclLevel::Public);
    assert_eq!(hit.owner.as_ref().map(|a| a.as_str()), Some("ann"));
    assert_eq!(hit.snippet, "the needle is public");
}

#[test]
fn without_encryption_private_and_team_records_are_searched_by_who_may_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = Store::open(
        swarm_store::StoreConfig::file(dir.path().join("plain.db"))
            .with_encrypt_up_to(None)
            .with_clock(Arc::new(clock))
            .with_sweep_interval(None),
    )
    .unwrap();
    store.ensure_swarm(&Identity::System, &swarm("s1")).unwrap();
    let env_like = |id: &str, teams: Vec<swarm_acl::TeamId>| {
        let aid = swarm_acl::AgentId::new(id).unwrap();
        store
            .insert_agent(
                &Identity::System,
                swarm_store::NewAgent {
                    id: aid.clone(),
                    swarm: swarm("s1"),
                    name: id.into(),
                    agent_type: "tester".into(),
                    capabilities: vec![],
                    metadata: serde_json::json!({}),
                    token_hash: [7; 32],
                    teams,
                    grants: swarm_acl::Grant::defaults(),
                },
            )
            .unwrap();
        Identity::Agent(aid)
    };
    let red = swarm_acl::TeamId::new("red").unwrap();
    store.create_team(&Identity::System, &red, &swarm("s1"), "red", "", None).unwrap();
    let ann = env_like("ann", vec![red.clone()]);
    let mate = env_like("mate", vec![red]);
    let peer = env_like("peer", vec![]);
    for (k, l) in [("p", AclLevel::Private), ("t", AclLevel::Team), ("s", AclLevel::Swarm)] {
        store.set(&ann, &key("s1", "n", k), Value::from("secret plan"), &at(l)).unwrap();
    }
    assert_eq!(keys(&store.search(&ann, &query("plan")).unwrap()), ["n/p", "n/s", "n/t"]);
    assert_eq!(keys(&store.search(&mate, &query("plan")).unwrap()), ["n/s", "n/t"]);
    assert_eq!(keys(&store.search(&peer, &query("plan")).unwrap()), ["n/s"]);
    assert_eq!(keys(&store.search(&Identity::System, &query("plan")).unwrap()).len(), 3);
    store.shutdown().unwrap();
}

#[test]
fn compressed_json_and_integer_values_are_searched_and_bytes_are_not() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    // Over the compression threshold and repetitive: stored LZ4-compressed.
    let long = format!("{} the Zebra at the end", "lorem ipsum dolor ".repeat(400));
    env.store
        .set(&ann, &key("s1", "n", "long"), Value::from(long.clone()), &at(AclLevel::Swarm))
        .unwrap();
    env.store
        .set(
            &ann,
            &key("s1", "n", "doc"),
            Value::Json(serde_json::json!({ "animal": "zebra", "legs": 4 })),
            &at(AclLevel::Swarm),
        )
        .unwrap();
    env.store
        .set(&ann, &key("s1", "n", "count"), Value::Integer(424242), &at(AclLevel::Swarm))
        .unwrap();
    env.store
        .set(&ann, &key("s1", "n", "blob"), Value::Bytes(b"zebra".to_vec()), &at(AclLevel::Swarm))
        .unwrap();

    let stored: i64 = raw(env.path())
        .query_row("SELECT length(value) FROM memory WHERE key = 'long'", [], |r| r.get(0))
        .unwrap();
    assert!(
        (stored as usize) < long.len() / 4,
        "the long value is stored compressed ({stored} bytes)"
    );

    let page = env.store.search(&ann, &query("ZEBRA")).unwrap();
    assert_eq!(keys(&page), ["n/doc", "n/long"], "case-insensitive; bytes are not text");
    let long_hit = &page.hits[1];
    assert_eq!(long_hit.size, long.len() as u64);
    assert!(long_hit.snippet.contains("Zebra at the end"), "{}", long_hit.snippet);
    assert!(long_hit.snippet.starts_with('…'));
    assert!(long_hit.snippet.chars().count() <= SearchQuery::DEFAULT_SNIPPET_CHARS);
    assert!(page.hits[0].snippet.contains(r#""animal":"zebra""#), "{}", page.hits[0].snippet);
    assert_eq!(keys(&env.store.search(&ann, &query("4242")).unwrap()), ["n/count"]);
    // Every word must appear.
    assert_eq!(keys(&env.store.search(&ann, &query("zebra legs")).unwrap()), ["n/doc"]);
    assert!(env.store.search(&ann, &query("zebra wings")).unwrap().hits.is_empty());
    // Snippet length is the caller's to choose, within bounds.
    let page = env.store.search(&ann, &query("end").snippet_chars(20)).unwrap();
    assert!(page.hits[0].snippet.chars().count() <= 20, "{}", page.hits[0].snippet);
}

#[test]
fn filters_narrow_the_search() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let put = |ns: &str, k: &str, tags: &[&str]| {
        let opts = at(AclLevel::Swarm).tags(tags.iter().copied());
        env.store.set(&ann, &key("s1", ns, k), Value::from("alpha beta"), &opts).unwrap();
    };
    put("a", "user:1", &["x"]);
    put("a", "user:2", &[]);
    put("a", "task:1", &["x"]);
    put("b", "user:3", &["x"]);
    let ns = |s: &str| Namespace::new(s).unwrap();
    assert_eq!(keys(&env.store.search(&ann, &query("alpha").namespace(ns("a"))).unwrap()).len(), 3);
    assert_eq!(
        keys(&env.store.search(&ann, &query("alpha").prefix("user:")).unwrap()),
        ["a/user:1", "a/user:2", "b/user:3"]
    );
    assert_eq!(
        keys(&env.store.search(&ann, &query("alpha").namespace(ns("a")).prefix("user:")).unwrap()),
        ["a/user:1", "a/user:2"]
    );
    assert_eq!(
        keys(&env.store.search(&ann, &query("alpha").tag("x")).unwrap()),
        ["a/task:1", "a/user:1", "b/user:3"]
    );
    // Expired records are absent, swept or not.
    env.store
        .set(
            &ann,
            &key("s1", "c", "soon"),
            Value::from("alpha"),
            &at(AclLevel::Swarm).ttl(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(
        keys(&env.store.search(&ann, &query("alpha").namespace(ns("c"))).unwrap()),
        ["c/soon"]
    );
    env.clock.advance(6_000);
    assert!(env.store.search(&ann, &query("alpha").namespace(ns("c"))).unwrap().hits.is_empty());
}

#[test]
fn pages_follow_the_cursor_without_gaps_or_repeats() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let items: Vec<_> = (0..25)
        .map(|i| (key("s1", "n", &format!("k{i:02}")), Value::from(format!("match number {i}"))))
        .collect();
    env.store.mset(&ann, items, &at(AclLevel::Swarm)).unwrap();
    let q = query("match").limit(10);
    let first = env.store.search(&ann, &q).unwrap();
    assert_eq!(first.hits.len(), 10);
    assert!(first.next.is_some());
    let (all, calls) = search_all(&env.store, &ann, q);
    let expected: Vec<String> = (0..25).map(|i| format!("n/k{i:02}")).collect();
    assert_eq!(all, expected);
    assert_eq!(calls, 3);
    let e = env.store.search(&ann, &query("x").after("bad")).unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
}

#[test]
fn a_flood_of_invisible_records_costs_calls_not_an_unbounded_scan() {
    let env = Env::with_config(|c| c.with_search_scan_budget(100));
    let ann = env.agent("ann", "s1", &[]);
    let peer = env.agent("peer", "s1", &[]);
    let red = env.team("red", "s1");
    let insider = env.agent("insider", "s1", &[&red]);
    // 600 records peer cannot see (team-level, encrypted) and 300 it can see but that do
    // not match, then one match at the end of the key range.
    for chunk in 0..6 {
        let items: Vec<_> = (0..100)
            .map(|i| {
                (key("s1", "n", &format!("a{:04}", chunk * 100 + i)), Value::from("needle hidden"))
            })
            .collect();
        env.store.mset(&insider, items, &at(AclLevel::Team)).unwrap();
    }
    let items: Vec<_> =
        (0..300).map(|i| (key("s1", "n", &format!("b{i:04}")), Value::from("hay"))).collect();
    env.store.mset(&ann, items, &at(AclLevel::Swarm)).unwrap();
    env.store
        .set(&ann, &key("s1", "n", "c"), Value::from("the needle"), &at(AclLevel::Swarm))
        .unwrap();

    let q = query("needle");
    let first = env.store.search(&peer, &q).unwrap();
    assert!(first.hits.is_empty());
    assert_eq!(first.examined, 0, "invisible rows are never fetched");
    assert!(first.next.is_some(), "the budget ran out: the cursor says where to go on");
    let mut page = first;
    let mut calls = 1;
    let mut found = Vec::new();
    while let Some(c) = page.next.clone() {
        page = env.store.search(&peer, &q.clone().after(c)).unwrap();
        assert!(page.examined <= 100, "one call examined {}", page.examined);
        found.extend(keys(&page));
        calls += 1;
    }
    assert_eq!(found, ["n/c"]);
    // 901 rows, 100 per call: ten calls, the last one finding the end.
    assert_eq!(calls, 10);
    // The insider sees the team records but they are encrypted: not searched either.
    let (found, _) = search_all(&env.store, &insider, query("needle"));
    assert_eq!(found, ["n/c"]);
}

/// The sealed bytes of a cursor, as the caller could decode them.
fn cursor_bytes(cursor: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn cursors_never_name_or_depend_on_hidden_records() {
    // The smallest window a store accepts (asking for less gets this), so that windows end
    // on hidden rows again and again.
    let env = Env::with_config(|c| c.with_search_scan_budget(1));
    let ann = env.agent("ann", "s1", &[]);
    let peer = env.agent("peer", "s1", &[]);
    // Rows peer cannot see, of many lengths and all named `secret…`: ann's private
    // records (encrypted), system records (plaintext) and expired swarm records. Between
    // them, visible matches.
    let (mut private, mut system, mut expiring, mut open) = (vec![], vec![], vec![], vec![]);
    for i in 0..40 {
        // Up to 320 bytes: some names are longer than a cursor holds inline.
        let pad = "x".repeat((i % 17) * 20);
        private.push(format!("k{i:03}-a-secret-private{pad}"));
        for j in 0..30 {
            system.push(format!("k{i:03}-b-secret-system{j:02}{pad}"));
        }
        expiring.push(format!("k{i:03}-c-secret-expiring{pad}"));
        open.push(format!("k{i:03}-d-open"));
    }
    let put = |who: &Identity, names: &[String], opts: SetOptions| {
        for chunk in names.chunks(500) {
            let items = chunk.iter().map(|n| (key("s1", "n", n), Value::from("needle"))).collect();
            env.store.mset(who, items, &opts).unwrap();
        }
    };
    put(&ann, &private, at(AclLevel::Private));
    put(&Identity::System, &system, at(AclLevel::System));
    put(&ann, &expiring, at(AclLevel::Swarm).ttl(Duration::from_secs(1)));
    put(&ann, &open, at(AclLevel::Swarm));
    env.clock.advance(2_000);
    let hidden_names: Vec<&String> = private.iter().chain(&system).chain(&expiring).collect();
    let visible: Vec<String> = open.iter().map(|n| format!("n/{n}")).collect();

    let q = query("needle");
    let mut page = env.store.search(&peer, &q).unwrap();
    let (mut found, mut examined, mut cursors) = (Vec::new(), 0, Vec::new());
    loop {
        found.extend(keys(&page));
        examined += page.examined;
        let Some(c) = page.next.clone() else { break };
        let bytes = cursor_bytes(&c);
        for name in &hidden_names {
            assert!(!c.contains(name.as_str()) && !contains(&bytes, name.as_bytes()), "{c}");
        }
        // No key name at all appears in the clear. (Not a two-byte probe such as `k0`:
        // sealed bytes are random and hold any given pair about once in 300 cursors.)
        for name in &open {
            assert!(!contains(&bytes, name.as_bytes()), "{c}");
        }
        assert!(!contains(&bytes, b"secret"), "{c}");
        cursors.push(c.clone());
        page = env.store.search(&peer, &q.clone().after(c)).unwrap();
        assert!(cursors.len() < 1_000, "the cursor never ended");
    }
    // Every visible match, across pages, and nothing hidden counted anywhere.
    assert_eq!(found, visible);
    assert_eq!(examined, 40, "only the visible records were examined");
    // 1 320 rows in windows of 100 (the floor): 14 pages, so 13 cursors, each of one
    // length whatever key length the window ended on.
    assert_eq!(cursors.len(), 13);
    assert!(cursors.iter().all(|c| c.len() == cursors[0].len()), "cursor lengths differ");
    let mut unique = cursors.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), cursors.len());
}

#[test]
fn a_forged_edited_or_borrowed_cursor_is_refused_the_same_way() {
    use base64::Engine as _;
    let mut env = Env::with_config(|c| c.with_search_scan_budget(100));
    let ann = env.agent("ann", "s1", &[]);
    let peer = env.agent("peer", "s1", &[]);
    let items: Vec<_> =
        (0..250).map(|i| (key("s1", "n", &format!("k{i:03}")), Value::from("hay"))).collect();
    env.store.mset(&ann, items, &at(AclLevel::Swarm)).unwrap();
    env.store.set(&ann, &key("s1", "n", "z"), Value::from("needle"), &at(AclLevel::Swarm)).unwrap();
    let q = query("needle").limit(5);
    let cursor = env.store.search(&peer, &q).unwrap().next.expect("the window ended first");
    // The genuine cursor works, for its own agent and query, as often as asked.
    for _ in 0..2 {
        let page = env.store.search(&peer, &q.clone().after(cursor.clone())).unwrap();
        assert!(page.hits.is_empty() && page.next.is_some());
    }
    // A different page size is the same query.
    env.store.search(&peer, &q.clone().limit(50).after(cursor.clone())).unwrap();

    let refused = |store: &Store, who: &Identity, q: SearchQuery| -> String {
        match store.search(who, &q) {
            Err(e @ StoreError::Invalid(_)) => e.to_string(),
            other => panic!("expected the cursor to be refused, got {other:?}"),
        }
    };
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let mut edited = cursor_bytes(&cursor);
    let last = edited.len() - 1;
    edited[last] ^= 0x01;
    let mut truncated = cursor.clone();
    truncated.pop();
    let with = |c: &str| q.clone().after(c.to_owned());
    let s = &env.store;
    let messages = vec![
        // Invented: the old clear-text format, encoded or not, and noise.
        refused(s, &peer, with("n\u{1f}k100")),
        refused(s, &peer, with(&b64("n\u{1f}k100"))),
        refused(s, &peer, with("AAAA")),
        refused(s, &peer, with("")),
        refused(s, &peer, with(&"A".repeat(100_000))),
        // Edited.
        refused(s, &peer, with(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&edited))),
        refused(s, &peer, with(&truncated)),
        refused(s, &peer, with(&format!("{cursor}A"))),
        // Borrowed by another agent, or by the system.
        refused(s, &ann, with(&cursor)),
        refused(s, &Identity::System, with(&cursor)),
        // Used for another query.
        refused(s, &peer, query("hay").after(cursor.clone())),
        refused(s, &peer, query("needle hay").after(cursor.clone())),
        refused(s, &peer, query("needle").prefix("k").after(cursor.clone())),
        refused(s, &peer, query("needle").tag("t").after(cursor.clone())),
        refused(
            s,
            &peer,
            query("needle").namespace(Namespace::new("n").unwrap()).after(cursor.clone()),
        ),
        refused(s, &peer, SearchQuery::new(swarm("s2"), "needle").unwrap().after(cursor.clone())),
    ];
    for m in &messages {
        assert_eq!(m, "invalid input: the cursor is not valid here: start the search again");
    }
    // Another store handle (here: the same file reopened) has another key.
    env.reopen();
    assert_eq!(refused(&env.store, &peer, with(&cursor)), messages[0]);
    // Starting again works.
    let (found, _) = search_all(&env.store, &peer, query("needle"));
    assert_eq!(found, ["n/z"]);
}

#[test]
fn a_page_can_be_continued_after_any_of_its_hits() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let items: Vec<_> =
        (0..12).map(|i| (key("s1", "n", &format!("k{i:02}")), Value::from("match"))).collect();
    env.store.mset(&ann, items, &at(AclLevel::Swarm)).unwrap();
    let q = query("match").limit(10);
    let page = env.store.search(&ann, &q).unwrap();
    assert_eq!(page.hits.len(), 10);
    assert_eq!(page.cursor_after(10), None);
    // Keep four hits, continue after the fourth: nothing is skipped or repeated.
    let c = page.cursor_after(3).unwrap().to_owned();
    let rest = env.store.search(&ann, &q.clone().after(c.clone())).unwrap();
    assert_eq!(
        keys(&rest),
        ["n/k04", "n/k05", "n/k06", "n/k07", "n/k08", "n/k09", "n/k10", "n/k11"]
    );
    // Bound like any cursor.
    let bob = env.agent("bob", "s1", &[]);
    assert!(matches!(env.store.search(&bob, &q.clone().after(c)), Err(StoreError::Invalid(_))));
    // The last hit's cursor is where the page's own cursor continues.
    let after_last =
        env.store.search(&ann, &q.clone().after(page.cursor_after(9).unwrap())).unwrap();
    let after_page = env.store.search(&ann, &q.clone().after(page.next.clone().unwrap())).unwrap();
    assert_eq!(keys(&after_last), keys(&after_page));
}

#[test]
fn a_revoke_applies_to_the_next_search() {
    let env = Env::new();
    let ann = env.agent("ann", "s1", &[]);
    let peer = env.agent("peer", "s1", &[]);
    env.store
        .set(&ann, &key("s1", "n", "k"), Value::from("shared word"), &at(AclLevel::Swarm))
        .unwrap();
    assert_eq!(keys(&env.store.search(&peer, &query("word")).unwrap()), ["n/k"]);
    let Identity::Agent(peer_id) = &peer else { unreachable!() };
    // Default grants give read up to public: revoking that level leaves nothing to read
    // swarm records with.
    env.store
        .revoke(
            &Identity::System,
            peer_id,
            ResourceType::Memory,
            AclLevel::Public,
            Some(vec![Action::Read]),
        )
        .unwrap();
    assert!(env.store.search(&peer, &query("word")).unwrap().hits.is_empty());
}

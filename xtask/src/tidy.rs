//! `cargo xtask tidy`: the crate graph of SPEC.md section 2, checked rather than hoped for.
//!
//! The graph comes from `cargo metadata --format-version 1 --no-deps`, whose packages are
//! the workspace members with the dependencies their manifests declare. The rules are data
//! ([`LAYERS`], [`OWNED`], [`PURE`]) applied by one function over a simplified graph
//! ([`check_graph`]), so they are unit-tested on hand-built graphs as well as run on the
//! real workspace by a test, which makes a plain `cargo test --workspace` fail on a
//! forbidden edge.
//!
//! Besides the graph, every member must opt into the workspace lint policy
//! (`[lints] workspace = true`) and start its crate root (`src/lib.rs`, or the binary's
//! `main.rs` when there is no library) with `//!` docs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::cargo;

/// Which workspace crates a crate may have as normal dependencies.
#[derive(Clone, Copy, Debug)]
enum Allowed {
    /// Exactly these (none for a leaf).
    Only(&'static [&'static str]),
    /// Every workspace crate but these.
    AnyExcept(&'static [&'static str]),
}

/// A crate's place in the layering: what it may build on. Lower crates never know about
/// higher ones, so each list names only crates below.
struct Layer {
    name: &'static str,
    may_use: Allowed,
}

const SCHEMA: &str = "swarm-schema";
const CODEC: &str = "swarm-codec";
const ACL: &str = "swarm-acl";
const STORE: &str = "swarm-store";
const REGISTRY: &str = "swarm-registry";
const COORD: &str = "swarm-coord";
const MEMORY: &str = "swarm-memory";
const MCP: &str = "swarm-mcp";
const CLI: &str = "swarm-cli";
const TESTKIT: &str = "swarm-testkit";

/// The allowed internal edges (normal dependencies). An edge between workspace crates that
/// is not listed here fails, and so does any internal edge of a crate missing from the
/// table: a new crate gets its place in the graph before it gets dependencies.
const LAYERS: &[Layer] = &[
    // Leaves: nothing of ours below them.
    Layer { name: SCHEMA, may_use: Allowed::Only(&[]) },
    Layer { name: CODEC, may_use: Allowed::Only(&[]) },
    Layer { name: ACL, may_use: Allowed::Only(&[]) },
    Layer { name: STORE, may_use: Allowed::Only(&[SCHEMA, CODEC, ACL]) },
    Layer { name: REGISTRY, may_use: Allowed::Only(&[STORE, ACL, CODEC]) },
    // Coordination knows messages and principals, never the database.
    Layer { name: COORD, may_use: Allowed::Only(&[ACL, CODEC]) },
    Layer { name: MEMORY, may_use: Allowed::Only(&[STORE, REGISTRY, COORD, ACL, CODEC, SCHEMA]) },
    // The MCP server adapts the umbrella for LLM clients; only the command serves it.
    Layer {
        name: MCP,
        may_use: Allowed::Only(&[MEMORY, STORE, REGISTRY, COORD, ACL, CODEC, SCHEMA]),
    },
    // The command is a client of the umbrella (and serves the MCP adapter): every rule it
    // relies on is enforced below the umbrella, never reached around it.
    Layer { name: CLI, may_use: Allowed::Only(&[MCP, MEMORY]) },
    Layer { name: TESTKIT, may_use: Allowed::AnyExcept(&[CLI, MCP]) },
    Layer { name: "xtask", may_use: Allowed::AnyExcept(&[MCP]) },
    Layer { name: "swarm-bench", may_use: Allowed::AnyExcept(&[MCP]) },
];

/// Outside crates that exactly one crate may depend on directly (normal dependencies).
const OWNED: &[(&str, &str)] = &[
    ("rusqlite", STORE),
    ("r2d2", STORE),
    ("r2d2_sqlite", STORE),
    ("libsqlite3-sys", STORE),
    ("redis", COORD),
    ("rmcp", MCP),
];

/// Exceptions to `OWNED`: the benchmark crate measures our figures beside the raw
/// libraries in the same run, so it calls them directly. It is never published or
/// depended on.
const BASELINES: &[(&str, &str)] = &[("swarm-bench", "rusqlite"), ("swarm-bench", "redis")];

/// Crates that must stay free of I/O, and what that rules out.
const PURE: &[&str] = &[CODEC, ACL];
/// Outside crates a pure crate may not have as a normal dependency.
const IO_CRATES: &[&str] = &["rusqlite", "redis", "r2d2", "r2d2_sqlite", "tokio"];
/// Outside crates a pure crate may not have even as a dev-dependency: its tests must not
/// need a database or a server.
const IO_DEV_CRATES: &[&str] = &["rusqlite", "redis"];

/// How a dependency is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    /// `[dependencies]`.
    Normal,
    /// `[dev-dependencies]`.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

/// One declared dependency, by package name (a rename does not hide it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dep {
    pub(crate) name: String,
    pub(crate) kind: DepKind,
}

/// A workspace member and what it depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) deps: Vec<Dep>,
}

/// A member as `cargo metadata` describes it: its graph node and the files tidy reads.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) package: Package,
    pub(crate) manifest_path: PathBuf,
    /// The crate roots that must start with `//!` docs: the library's, or every binary's
    /// when there is no library.
    pub(crate) roots: Vec<PathBuf>,
}

/// A forbidden edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Violation {
    pub(crate) krate: String,
    pub(crate) dep: String,
    pub(crate) reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.krate, self.dep, self.reason)
    }
}

pub(crate) fn run(root: &Path) -> Result<()> {
    let mut command = cargo(root);
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    let shown = crate::show(&command);
    let output = command.output().with_context(|| format!("cannot start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let json = String::from_utf8(output.stdout).context("cargo metadata printed invalid UTF-8")?;
    let members = parse_metadata(&json)?;
    let packages: Vec<Package> = members.iter().map(|m| m.package.clone()).collect();
    let mut problems: Vec<String> =
        check_graph(&packages).iter().map(ToString::to_string).collect();
    problems.extend(check_files(root, &members));
    if !problems.is_empty() {
        bail!("tidy found {} problem(s):\n{}", problems.len(), problems.join("\n"));
    }
    println!("tidy: {} workspace crates, dependency graph, lints and crate docs ok", members.len());
    Ok(())
}

/// The workspace members of a `cargo metadata --format-version 1` document.
pub(crate) fn parse_metadata(json: &str) -> Result<Vec<Member>> {
    let doc: Value = serde_json::from_str(json).context("cargo metadata output is not JSON")?;
    let members: BTreeSet<&str> = doc["workspace_members"]
        .as_array()
        .context("cargo metadata: no `workspace_members` array")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = doc["packages"].as_array().context("cargo metadata: no `packages` array")?;
    let mut out = Vec::new();
    for package in packages {
        let id = str_field(package, "id")?;
        if !members.contains(id) {
            continue;
        }
        let name = str_field(package, "name")?.to_owned();
        let mut deps = Vec::new();
        for dep in package["dependencies"]
            .as_array()
            .with_context(|| format!("{name}: no `dependencies` array"))?
        {
            let kind = match dep["kind"].as_str() {
                None | Some("normal") => DepKind::Normal,
                Some("dev") => DepKind::Dev,
                Some("build") => DepKind::Build,
                Some(other) => bail!("{name}: unknown dependency kind `{other}`"),
            };
            deps.push(Dep { name: str_field(dep, "name")?.to_owned(), kind });
        }
        let targets =
            package["targets"].as_array().with_context(|| format!("{name}: no `targets` array"))?;
        let roots_of = |wanted: fn(&str) -> bool| -> Result<Vec<PathBuf>> {
            let mut roots = Vec::new();
            for target in targets {
                let kinds = target["kind"]
                    .as_array()
                    .with_context(|| format!("{name}: target without `kind`"))?;
                if kinds.iter().filter_map(Value::as_str).any(wanted) {
                    roots.push(PathBuf::from(str_field(target, "src_path")?));
                }
            }
            Ok(roots)
        };
        let mut roots = roots_of(|k| {
            matches!(k, "lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro")
        })?;
        if roots.is_empty() {
            roots = roots_of(|k| k == "bin")?;
        }
        out.push(Member {
            package: Package { name, deps },
            manifest_path: PathBuf::from(str_field(package, "manifest_path")?),
            roots,
        });
    }
    Ok(out)
}

fn str_field<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value[field].as_str().with_context(|| format!("cargo metadata: missing string field `{field}`"))
}

/// Every forbidden edge of `packages`, sorted, one per (crate, dependency, kind) with all
/// its reasons.
pub(crate) fn check_graph(packages: &[Package]) -> Vec<Violation> {
    let internal: BTreeSet<&str> =
        packages.iter().map(|p| p.name.as_str()).chain(LAYERS.iter().map(|l| l.name)).collect();
    let mut out = Vec::new();
    for package in packages {
        let krate = package.name.as_str();
        for dep in &package.deps {
            let reasons = edge_problems(krate, dep, internal.contains(dep.name.as_str()));
            if !reasons.is_empty() {
                out.push(Violation {
                    krate: krate.to_owned(),
                    dep: dep.name.clone(),
                    reason: reasons.join("; "),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Why the edge `krate -> dep` is forbidden, if it is.
fn edge_problems(krate: &str, dep: &Dep, dep_is_internal: bool) -> Vec<String> {
    let name = dep.name.as_str();
    let pure = PURE.contains(&krate);
    let mut reasons = Vec::new();
    match dep.kind {
        DepKind::Normal => {
            if dep_is_internal && let Some(reason) = internal_edge_problem(krate, name) {
                reasons.push(reason);
            }
            if pure && IO_CRATES.contains(&name) {
                reasons.push(format!(
                    "{krate} is pure and may not depend on I/O crates ({})",
                    IO_CRATES.join(", ")
                ));
            }
            if let Some((_, owner)) = OWNED.iter().find(|(outside, _)| *outside == name)
                && *owner != krate
                && !BASELINES.contains(&(krate, name))
            {
                reasons.push(format!("only {owner} may depend on {name}"));
            }
        }
        DepKind::Dev => {
            if pure && IO_DEV_CRATES.contains(&name) {
                reasons.push(format!(
                    "{krate} is pure: its tests may not use {name} either (dev-dependency)"
                ));
            }
        }
        // Build scripts run at compile time and reach nothing at run time.
        DepKind::Build => {}
    }
    reasons
}

/// Why a normal dependency of `krate` on the workspace crate `dep` breaks the layering.
fn internal_edge_problem(krate: &str, dep: &str) -> Option<String> {
    let Some(layer) = LAYERS.iter().find(|l| l.name == krate) else {
        return Some(format!(
            "{krate} is not in the layering table of xtask/src/tidy.rs; give it a place in SPEC.md section 2's graph first"
        ));
    };
    match layer.may_use {
        Allowed::Only([]) => {
            Some(format!("{krate} is a leaf and may not depend on any workspace crate"))
        }
        Allowed::Only(allowed) if !allowed.contains(&dep) => Some(format!(
            "{krate} may depend only on {} among workspace crates",
            allowed.join(", ")
        )),
        Allowed::AnyExcept(denied) if denied.contains(&dep) => {
            Some(format!("{krate} may not depend on {dep}"))
        }
        Allowed::Only(_) | Allowed::AnyExcept(_) => None,
    }
}

/// The manifest and crate-root checks, as `path: problem` lines.
fn check_files(root: &Path, members: &[Member]) -> Vec<String> {
    let shown = |path: &Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    let mut out = Vec::new();
    for member in members {
        match std::fs::read_to_string(&member.manifest_path) {
            Ok(text) if has_workspace_lints(&text) => {}
            Ok(_) => out.push(format!(
                "{}: {} does not use the workspace lint policy (add `[lints]` with `workspace = true`)",
                shown(&member.manifest_path),
                member.package.name
            )),
            Err(e) => out.push(format!("{}: cannot read: {e}", shown(&member.manifest_path))),
        }
        if member.roots.is_empty() {
            out.push(format!(
                "{}: {} has no library or binary target",
                shown(&member.manifest_path),
                member.package.name
            ));
        }
        for crate_root in &member.roots {
            match std::fs::read_to_string(crate_root) {
                Ok(text) if text.trim_start().starts_with("//!") => {}
                Ok(_) => out.push(format!(
                    "{}: crate root must start with `//!` docs saying what {} is for and what it is not",
                    shown(crate_root),
                    member.package.name
                )),
                Err(e) => out.push(format!("{}: cannot read: {e}", shown(crate_root))),
            }
        }
    }
    out
}

/// Whether a manifest opts into `[workspace.lints]`: a `[lints]` table holding
/// `workspace = true`, or the same written as a dotted or inline key before any table.
fn has_workspace_lints(manifest: &str) -> bool {
    let mut table = String::new();
    for line in manifest.lines() {
        // No value tidy looks for contains `#`, so cutting at the first one is safe here.
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            table = line.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            continue;
        }
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let found = match table.as_str() {
            "lints" => compact == "workspace=true",
            "" => compact == "lints.workspace=true" || compact == "lints={workspace=true}",
            _ => false,
        };
        if found {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, deps: &[(&str, DepKind)]) -> Package {
        Package {
            name: name.to_owned(),
            deps: deps.iter().map(|(n, kind)| Dep { name: (*n).to_owned(), kind: *kind }).collect(),
        }
    }

    use DepKind::{Build, Dev, Normal};

    /// The workspace as SPEC.md section 2 draws it, with every allowed kind of edge.
    fn clean_graph() -> Vec<Package> {
        vec![
            package(SCHEMA, &[("blake3", Normal), ("cc", Build)]),
            package(CODEC, &[("aes-gcm", Normal), ("thiserror", Normal), ("proptest", Dev)]),
            package(ACL, &[("serde", Normal), ("parking_lot", Normal), ("proptest", Dev)]),
            package(
                STORE,
                &[
                    (SCHEMA, Normal),
                    (CODEC, Normal),
                    (ACL, Normal),
                    ("rusqlite", Normal),
                    ("r2d2", Normal),
                    ("r2d2_sqlite", Normal),
                    ("tempfile", Dev),
                    (TESTKIT, Dev),
                ],
            ),
            package(REGISTRY, &[(STORE, Normal), (ACL, Normal), (CODEC, Normal), (TESTKIT, Dev)]),
            package(
                COORD,
                &[
                    (ACL, Normal),
                    (CODEC, Normal),
                    ("redis", Normal),
                    ("tokio", Normal),
                    (TESTKIT, Dev),
                ],
            ),
            package(
                MEMORY,
                &[
                    (STORE, Normal),
                    (REGISTRY, Normal),
                    (COORD, Normal),
                    (ACL, Normal),
                    (CODEC, Normal),
                    (SCHEMA, Normal),
                    (TESTKIT, Dev),
                ],
            ),
            package(MCP, &[(MEMORY, Normal), (STORE, Normal), ("rmcp", Normal), ("tokio", Normal)]),
            package(CLI, &[(MCP, Normal), (MEMORY, Normal), ("clap", Normal), (TESTKIT, Dev)]),
            package(
                TESTKIT,
                &[(MEMORY, Normal), (STORE, Normal), (COORD, Normal), ("tempfile", Normal)],
            ),
            package("swarm-bench", &[(MEMORY, Normal), (CODEC, Normal), ("rusqlite", Dev)]),
            package(
                "xtask",
                &[(STORE, Normal), (SCHEMA, Normal), (CLI, Normal), ("serde_json", Normal)],
            ),
        ]
    }

    /// The clean graph with one extra edge.
    fn with_edge(krate: &str, dep: &str, kind: DepKind) -> Vec<Package> {
        let mut graph = clean_graph();
        let p = graph.iter_mut().find(|p| p.name == krate).expect("crate in the clean graph");
        p.deps.push(Dep { name: dep.to_owned(), kind });
        graph
    }

    fn only_violation(graph: &[Package]) -> Violation {
        let mut found = check_graph(graph);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.remove(0)
    }

    #[test]
    fn the_intended_graph_is_clean() {
        assert_eq!(check_graph(&clean_graph()), vec![]);
    }

    #[test]
    fn each_forbidden_edge_is_reported() {
        let cases = [
            (ACL, "rusqlite", "swarm-acl is pure"),
            (ACL, "tokio", "swarm-acl is pure"),
            (CODEC, STORE, "swarm-codec is a leaf"),
            (SCHEMA, ACL, "swarm-schema is a leaf"),
            (COORD, STORE, "swarm-coord may depend only on swarm-acl, swarm-codec"),
            (COORD, REGISTRY, "swarm-coord may depend only on"),
            (REGISTRY, "redis", "only swarm-coord may depend on redis"),
            (REGISTRY, COORD, "swarm-registry may depend only on"),
            (REGISTRY, SCHEMA, "swarm-registry may depend only on"),
            (
                STORE,
                REGISTRY,
                "swarm-store may depend only on swarm-schema, swarm-codec, swarm-acl",
            ),
            (STORE, "redis", "only swarm-coord may depend on redis"),
            (MEMORY, "rusqlite", "only swarm-store may depend on rusqlite"),
            (MEMORY, "libsqlite3-sys", "only swarm-store may depend on libsqlite3-sys"),
            (MEMORY, CLI, "swarm-memory may depend only on"),
            (MEMORY, TESTKIT, "swarm-memory may depend only on"),
            (CLI, "r2d2", "only swarm-store may depend on r2d2"),
            (CLI, STORE, "swarm-cli may depend only on"),
            (TESTKIT, CLI, "swarm-testkit may not depend on swarm-cli"),
            ("xtask", "r2d2_sqlite", "only swarm-store may depend on r2d2_sqlite"),
            (MEMORY, MCP, "swarm-memory may depend only on"),
            (STORE, MCP, "swarm-store may depend only on"),
            (TESTKIT, MCP, "swarm-testkit may not depend on swarm-mcp"),
            ("xtask", MCP, "xtask may not depend on swarm-mcp"),
            (MCP, CLI, "swarm-mcp may depend only on"),
            (CLI, "rmcp", "only swarm-mcp may depend on rmcp"),
        ];
        for (krate, dep, reason) in cases {
            let v = only_violation(&with_edge(krate, dep, Normal));
            assert_eq!((v.krate.as_str(), v.dep.as_str()), (krate, dep));
            assert!(
                v.reason.contains(reason),
                "{krate} -> {dep}: expected `{reason}` in `{}`",
                v.reason
            );
        }
    }

    #[test]
    fn a_pure_crate_on_sqlite_gets_both_reasons_on_one_line() {
        let v = only_violation(&with_edge(CODEC, "rusqlite", Normal));
        assert_eq!(
            v.to_string(),
            "swarm-codec -> rusqlite: swarm-codec is pure and may not depend on I/O crates \
             (rusqlite, redis, r2d2, r2d2_sqlite, tokio); only swarm-store may depend on rusqlite"
        );
    }

    #[test]
    fn dev_dependencies_are_free_except_io_in_pure_crates() {
        for (krate, dep) in [(CODEC, "rusqlite"), (ACL, "redis")] {
            let v = only_violation(&with_edge(krate, dep, Dev));
            assert!(v.reason.contains("dev-dependency"), "{v}");
        }
        // Elsewhere dev-dependencies are not layering: a test may use any helper.
        for (krate, dep) in [(COORD, STORE), (STORE, MEMORY), (ACL, "tokio"), (REGISTRY, "redis")] {
            assert_eq!(check_graph(&with_edge(krate, dep, Dev)), vec![], "{krate} -> {dep} (dev)");
        }
    }

    #[test]
    fn build_dependencies_are_not_checked() {
        assert_eq!(check_graph(&with_edge(ACL, "rusqlite", Build)), vec![]);
    }

    #[test]
    fn a_crate_outside_the_table_may_not_use_workspace_crates() {
        let mut graph = clean_graph();
        graph.push(package("swarm-new", &[(ACL, Normal), ("serde", Normal)]));
        let v = only_violation(&graph);
        assert_eq!((v.krate.as_str(), v.dep.as_str()), ("swarm-new", ACL));
        assert!(v.reason.contains("not in the layering table"), "{v}");
        // And nothing listed may depend on it.
        let mut graph = clean_graph();
        graph.push(package("swarm-new", &[]));
        graph
            .iter_mut()
            .find(|p| p.name == STORE)
            .expect("store")
            .deps
            .push(Dep { name: "swarm-new".into(), kind: Normal });
        let v = only_violation(&graph);
        assert_eq!((v.krate.as_str(), v.dep.as_str()), (STORE, "swarm-new"));
    }

    #[test]
    fn several_violations_are_all_reported_in_order() {
        let graph = vec![
            package(COORD, &[(STORE, Normal), ("redis", Normal)]),
            package(ACL, &[("rusqlite", Normal), ("rusqlite", Normal)]),
        ];
        let found: Vec<String> =
            check_graph(&graph).iter().map(|v| format!("{} -> {}", v.krate, v.dep)).collect();
        assert_eq!(found, ["swarm-acl -> rusqlite", "swarm-coord -> swarm-store"]);
    }

    const FIXTURE: &str = include_str!("../tests/fixtures/metadata.json");

    #[test]
    fn parses_cargo_metadata_and_finds_the_fixture_violations() {
        let members = parse_metadata(FIXTURE).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.package.name.as_str()).collect();
        // `serde` is in `packages` but not a member, so it is not checked.
        assert_eq!(names, [ACL, CODEC, STORE, COORD, REGISTRY, "swarm-cli"]);
        let store = &members[2];
        assert_eq!(
            store.package.deps,
            vec![
                Dep { name: SCHEMA.into(), kind: Normal },
                Dep { name: "rusqlite".into(), kind: Normal },
                Dep { name: "tempfile".into(), kind: Dev },
                Dep { name: "cc".into(), kind: Build },
            ]
        );
        assert_eq!(store.roots, [PathBuf::from("/ws/crates/swarm-store/src/lib.rs")]);
        assert_eq!(members[5].roots, [PathBuf::from("/ws/crates/swarm-cli/src/main.rs")]);

        let packages: Vec<Package> = members.into_iter().map(|m| m.package).collect();
        let found: Vec<String> = check_graph(&packages).iter().map(ToString::to_string).collect();
        let edges: Vec<&str> =
            found.iter().map(|line| line.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            edges,
            [
                "swarm-acl -> rusqlite",
                "swarm-codec -> redis",
                "swarm-codec -> swarm-store",
                "swarm-coord -> swarm-store",
                "swarm-registry -> redis",
            ],
            "{found:#?}"
        );
        // The renamed dependency is checked under its package name.
        assert!(
            found.iter().any(|l| l.starts_with("swarm-registry -> redis: only swarm-coord")),
            "{found:#?}"
        );
    }

    #[test]
    fn malformed_metadata_is_an_error() {
        assert!(parse_metadata("not json").is_err());
        assert!(parse_metadata("{}").is_err());
        let bad_kind = FIXTURE.replacen("\"kind\": \"dev\"", "\"kind\": \"weird\"", 1);
        let err = parse_metadata(&bad_kind).unwrap_err();
        assert!(err.to_string().contains("unknown dependency kind `weird`"), "{err}");
    }

    #[test]
    fn workspace_lints_are_recognised() {
        assert!(has_workspace_lints("[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"));
        assert!(has_workspace_lints("[lints]\n  workspace=true # inherit\n[dependencies]\n"));
        assert!(has_workspace_lints("lints.workspace = true\n[package]\nname = \"a\"\n"));
        assert!(!has_workspace_lints("[package]\nname = \"a\"\n"));
        assert!(!has_workspace_lints("[lints]\n[dependencies]\nworkspace = true\n"));
        assert!(!has_workspace_lints("[lints]\n# workspace = true\n"));
        assert!(!has_workspace_lints("[lints.rust]\nworkspace = true\n"));
    }

    #[test]
    fn missing_lints_and_docs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let good = root.join("crates/good");
        let bad = root.join("crates/bad");
        for d in [&good, &bad] {
            std::fs::create_dir_all(d.join("src")).unwrap();
        }
        std::fs::write(
            good.join("Cargo.toml"),
            "[package]\nname = \"good\"\n[lints]\nworkspace = true\n",
        )
        .unwrap();
        std::fs::write(good.join("src/lib.rs"), "\n//! What good is for.\n").unwrap();
        std::fs::write(bad.join("Cargo.toml"), "[package]\nname = \"bad\"\n").unwrap();
        std::fs::write(bad.join("src/lib.rs"), "#![allow(missing_docs)]\n//! Too late.\n").unwrap();
        let member = |name: &str, dir: &Path| Member {
            package: package(name, &[]),
            manifest_path: dir.join("Cargo.toml"),
            roots: vec![dir.join("src/lib.rs")],
        };
        let problems = check_files(root, &[member("good", &good), member("bad", &bad)]);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("crates/bad/Cargo.toml: bad does not use the workspace lint policy"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("crates/bad/src/lib.rs: crate root must start with `//!` docs"),
            "{problems:#?}"
        );
    }

    /// The real workspace obeys the rules: this is what makes `cargo test --workspace` fail
    /// on a forbidden edge, not only `cargo xtask tidy`.
    #[test]
    fn workspace_is_tidy() {
        if let Err(e) = run(&crate::workspace_root()) {
            panic!("{e:#}");
        }
    }
}

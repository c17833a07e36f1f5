//! Full-text search over the memory records a principal can see that are stored in
//! plaintext.
//!
//! "Stored in plaintext" means not encrypted (`key_id IS NULL`): by default records at the
//! swarm, public and system levels, or every level when the store encrypts none. Their
//! envelopes may still be LZ4-compressed; they are opened by the same codec path as `get`.
//! Encrypted records are never opened here, whoever asks: their keys and metadata stay
//! reachable through `list`, their values through `get`.
//!
//! The rows are chosen by the same ACL predicate as every other read, inside the SQL, so an
//! invisible record is never fetched and never contributes a hit, a snippet or a count.
//!
//! One call does bounded work. It first fixes a window of at most the store's scan budget
//! ([`crate::StoreConfig::with_search_scan_budget`], 2000 rows by default) of the key
//! range, in `(namespace, key)` order, using only what the primary key can seek on, and
//! then looks only inside that window; decoding stops after [`SearchQuery::BYTE_BUDGET`]
//! bytes of plaintext. A page that stopped before the end of the range carries a cursor,
//! so a flood of invisible, encrypted or non-matching records costs the caller more calls,
//! never one call without end.
//!
//! The window is counted over every row of the key range, so its end may be a record the
//! caller cannot see. The cursor therefore never shows a position: it is sealed (see
//! `memory::cursor`) under a key that lives only in this store's memory, bound to the
//! principal and to the query, and every cursor has the same length. A cursor is valid
//! only in the process, and for the [`Store`] handle, that issued it, and only for the
//! same principal and query; any other cursor is refused with one `Invalid` error, "the
//! cursor is not valid here: start the search again".
//!
//! What remains observable: where a page ends. The number of pages a search takes, and
//! which of the caller's visible records land on which page, roughly reveal how many rows
//! (visible or not) the key range holds, at the granularity of the scan budget.

use rusqlite::params_from_iter;
use swarm_acl::{
    AclLevel, Action, AgentId, Identity, ResourceType, SwarmId, TeamId, Timestamp, sql_predicate,
};

use super::cursor::Exposure;
use super::{COLS, Key, Namespace, RecordKey, Value, ValueType, glob, parse_scope, parse_tags};
use crate::error::{Result, StoreError};
use crate::metrics::Op;
use crate::sql::{Bind, push_pred, u64_of};
use crate::store::Store;

/// A search request: records of a swarm whose plaintext value contains every term of a
/// query, optionally in one namespace, under a key prefix, carrying a tag.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    swarm: SwarmId,
    /// Lowercased terms, deduplicated, in the order given.
    terms: Vec<String>,
    namespace: Option<Namespace>,
    prefix: String,
    tag: Option<String>,
    /// A cursor of a previous page, still sealed: only the store opens it.
    after: Option<String>,
    limit: usize,
    byte_budget: usize,
    snippet_chars: usize,
}

impl SearchQuery {
    /// Most hits one page returns.
    pub const MAX_LIMIT: usize = 100;
    /// Bytes of plaintext one call decodes before it stops (checked after each record, so
    /// one record larger than this is still searched whole).
    pub const BYTE_BUDGET: usize = 16 * 1024 * 1024;
    /// Characters of a snippet, by default.
    pub const DEFAULT_SNIPPET_CHARS: usize = 160;
    /// Characters of a snippet, at most.
    pub const MAX_SNIPPET_CHARS: usize = 1_000;
    /// Longest query, in characters.
    pub const MAX_QUERY_CHARS: usize = 256;
    /// Most terms in a query.
    pub const MAX_TERMS: usize = 16;

    /// Records of `swarm` whose value contains every whitespace-separated term of `text`
    /// (case-insensitively), 20 per page.
    pub fn new(swarm: SwarmId, text: &str) -> Result<Self> {
        if text.chars().count() > Self::MAX_QUERY_CHARS {
            return Err(StoreError::invalid(format!(
                "the search query is longer than {} characters",
                Self::MAX_QUERY_CHARS
            )));
        }
        let mut terms: Vec<String> = Vec::new();
        for t in text.split_whitespace() {
            let t = fold(t);
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        if terms.is_empty() {
            return Err(StoreError::invalid("the search query has no words"));
        }
        if terms.len() > Self::MAX_TERMS {
            return Err(StoreError::invalid(format!(
                "the search query has {} words, the limit is {}",
                terms.len(),
                Self::MAX_TERMS
            )));
        }
        Ok(Self {
            swarm,
            terms,
            namespace: None,
            prefix: String::new(),
            tag: None,
            after: None,
            limit: 20,
            byte_budget: Self::BYTE_BUDGET,
            snippet_chars: Self::DEFAULT_SNIPPET_CHARS,
        })
    }

    /// Only this namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Only records carrying `tag`.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Continue after a cursor a previous page returned ([`SearchPage::next`] or
    /// [`SearchPage::cursor_after`]), passed unchanged. The cursor is opaque: it opens only
    /// in the store that issued it, for the same principal and the same query (swarm,
    /// namespace, prefix, tag and words); [`Store::search`] refuses any other.
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// Hits per page, 1 to [`SearchQuery::MAX_LIMIT`].
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n.clamp(1, Self::MAX_LIMIT);
        self
    }

    /// Characters of each snippet, 16 to [`SearchQuery::MAX_SNIPPET_CHARS`].
    pub fn snippet_chars(mut self, n: usize) -> Self {
        self.snippet_chars = n.clamp(16, Self::MAX_SNIPPET_CHARS);
        self
    }

    /// What a cursor is bound to: the principal and every part of the query that chooses
    /// rows (swarm, namespace, prefix, tag, words), each field length-prefixed so no two
    /// different queries encode alike. The page size and snippet length may change from
    /// page to page.
    fn binding(&self, who: &Identity) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        fn optional(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    field(out, v.as_bytes());
                }
            }
        }
        let mut out = Vec::with_capacity(128);
        match who {
            Identity::System => out.push(0),
            Identity::Agent(id) => {
                out.push(1);
                field(&mut out, id.as_str().as_bytes());
            }
        }
        field(&mut out, self.swarm.as_str().as_bytes());
        optional(&mut out, self.namespace.as_ref().map(Namespace::as_str));
        field(&mut out, self.prefix.as_bytes());
        optional(&mut out, self.tag.as_deref());
        field(&mut out, &u64::try_from(self.terms.len()).unwrap_or(u64::MAX).to_be_bytes());
        for t in &self.terms {
            field(&mut out, t.as_bytes());
        }
        out
    }
}

/// One record whose value matched: metadata and a snippet around the first match, never
/// the whole value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchHit {
    /// Namespace.
    pub namespace: Namespace,
    /// Key.
    pub key: Key,
    /// Level.
    pub level: AclLevel,
    /// Owner.
    pub owner: Option<AgentId>,
    /// Team.
    pub team: Option<TeamId>,
    /// Value type.
    pub value_type: ValueType,
    /// Version.
    pub version: u64,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Last write.
    pub updated_at: Timestamp,
    /// Expiry.
    pub expires_at: Option<Timestamp>,
    /// Text around the first match of the first term, at most the query's snippet length,
    /// with `…` where it was cut and control characters shown as spaces.
    pub snippet: String,
}

/// A page of search results.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SearchPage {
    /// Hits, in `(namespace, key)` order.
    pub hits: Vec<SearchHit>,
    /// Pass this to [`SearchQuery::after`] to continue; `None` when the key range was
    /// searched to its end. A page may be empty and still carry a cursor: the call ran
    /// out of its budget before it found anything.
    ///
    /// The cursor is opaque and sealed: it reveals nothing (every cursor has the same
    /// length), and opens only in the store handle that issued it, in this process, for
    /// the same principal and query.
    pub next: Option<String>,
    /// Visible, plaintext, live records whose values were decoded and searched (only
    /// records the caller may see are ever counted).
    pub examined: u64,
    /// Visible plaintext records whose value could not be opened (a damaged envelope, or
    /// a plain envelope at a level the policy encrypts); they are skipped, not hidden.
    pub unreadable: u64,
    /// A cursor to continue after each hit, for a caller that shows only part of a page.
    #[serde(skip)]
    resume: Vec<String>,
}

impl SearchPage {
    /// A cursor that continues right after `hits[index]` (so a caller that keeps only the
    /// first hits of a page can go on without a gap); `None` past the last hit. Sealed and
    /// bound like [`SearchPage::next`].
    pub fn cursor_after(&self, index: usize) -> Option<&str> {
        self.resume.get(index).map(String::as_str)
    }
}

/// Folds text for case-insensitive matching, one character at a time (so an offset in the
/// folded text maps back to the original by walking it, see [`original_offset`]).
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// The byte offset in `original` of the character whose folded form starts at byte
/// `folded_at` of `fold(original)`.
fn original_offset(original: &str, folded_at: usize) -> usize {
    let mut folded = 0;
    for (i, c) in original.char_indices() {
        if folded >= folded_at {
            return i;
        }
        folded += c.to_lowercase().map(char::len_utf8).sum::<usize>();
    }
    original.len()
}

/// The text a value is searched as: text as it is, JSON serialized compactly, integers in
/// decimal. Bytes are not text and are not searched.
fn searchable(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::Text(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Json(v) => serde_json::to_string(v).ok().map(std::borrow::Cow::Owned),
        Value::Integer(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bytes(_) => None,
    }
}

/// Whether `text` contains every term, and if so a snippet of about `chars` characters
/// around the first term's first match.
fn matches(text: &str, terms: &[String], chars: usize) -> Option<String> {
    let folded = fold(text);
    let mut first = None;
    for (i, t) in terms.iter().enumerate() {
        let at = folded.find(t.as_str())?;
        if i == 0 {
            first = Some(at);
        }
    }
    let start_byte = original_offset(text, first.unwrap_or(0));
    Some(snippet(text, start_byte, chars))
}

/// At most `chars` characters of `text` around byte `at` (a character boundary): up to a
/// third of them before it, `…` where the text was cut.
fn snippet(text: &str, at: usize, chars: usize) -> String {
    let start = text[..at].char_indices().rev().take(chars / 3).last().map_or(at, |(i, _)| i);
    let cut_start = start > 0;
    let room = chars.saturating_sub(usize::from(cut_start));
    let body: Vec<char> = text[start..].chars().take(room + 1).collect();
    let cut_end = body.len() > room;
    let keep = if cut_end { room.saturating_sub(1) } else { body.len() };
    let mut out = String::with_capacity(keep + 8);
    if cut_start {
        out.push('…');
    }
    out.extend(body[..keep].iter().map(|&c| if c.is_control() { ' ' } else { c }));
    if cut_end {
        out.push('…');
    }
    out
}

/// One candidate row, before its value is opened.
struct Candidate {
    namespace: String,
    key: String,
    level: i64,
    owner: Option<String>,
    team: Option<String>,
    value_type: String,
    value: Vec<u8>,
    size: i64,
    version: i64,
    tags: String,
    updated_at: i64,
    expires_at: Option<i64>,
}

impl Store {
    /// Searches the values of the records `who` can see that are stored in plaintext (see
    /// the module docs of `memory::search` for which those are and how much one call
    /// does). Hits come in `(namespace, key)` order with a snippet each; follow
    /// [`SearchPage::next`] to continue.
    pub fn search(&self, who: &Identity, q: &SearchQuery) -> Result<SearchPage> {
        self.shared.metrics.time(Op::List, || {
            let shared = &self.shared;
            let now = shared.now();
            let binding = q.binding(who);
            let cursors = &shared.search_cursors;
            // Opened before anything is read: a cursor that does not open says nothing
            // about the data, only that it is not valid here.
            let after = q.after.as_deref().map(|c| cursors.open(&binding, c)).transpose()?;
            let (page, hit_keys) = shared.read_snapshot_as(who, |conn, p| {
                let upper = glob::prefix_successor(&q.prefix);
                let after = after.as_ref().map(|(n, k)| (n.as_str(), k.as_str()));
                // The window: at most the scan budget of rows from the cursor on, using
                // only what the primary key (swarm, namespace, key) can seek on, so
                // finding its end costs at most that many steps. It counts rows the
                // caller cannot see, so its end is only ever handed out sealed.
                let mut wsql = String::from("SELECT namespace, key FROM memory WHERE swarm_id = ?1");
                let mut wbinds: Vec<Bind<'_>> = vec![Bind::Text(q.swarm.as_str())];
                let mut n = 2;
                if let Some(ns) = &q.namespace {
                    wsql.push_str(&format!(" AND namespace = ?{n}"));
                    wbinds.push(Bind::Text(ns.as_str()));
                    n += 1;
                    if !q.prefix.is_empty() {
                        wsql.push_str(&format!(" AND key >= ?{n}"));
                        wbinds.push(Bind::Text(&q.prefix));
                        n += 1;
                        if let Some(u) = &upper {
                            wsql.push_str(&format!(" AND key < ?{n}"));
                            wbinds.push(Bind::Text(u));
                            n += 1;
                        }
                    }
                }
                if let Some((ans, akey)) = after {
                    wsql.push_str(&format!(" AND (namespace, key) > (?{n}, ?{})", n + 1));
                    wbinds.push(Bind::Text(ans));
                    wbinds.push(Bind::Text(akey));
                    n += 2;
                }
                wsql.push_str(&format!(" ORDER BY namespace, key LIMIT 1 OFFSET ?{n}"));
                let budget = shared.config.search_scan_budget;
                let offset = i64::try_from(budget.saturating_sub(1)).unwrap_or(i64::MAX);
                wbinds.push(Bind::Int(offset));
                let window_end: Option<(String, String)> = {
                    use rusqlite::OptionalExtension as _;
                    conn.prepare_cached(&wsql)?
                        .query_row(params_from_iter(wbinds), |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?
                };

                // The candidates: inside the window, live, not encrypted, and visible.
                let mut sql = String::from(
                    "SELECT m.namespace, m.key, m.acl_level, m.owner_id, m.team_id, m.value_type, m.value, m.size, \
                     m.version, m.tags, m.updated_at, m.expires_at FROM memory AS m \
                     WHERE m.swarm_id = ?1 AND m.key_id IS NULL AND (m.expires_at IS NULL OR m.expires_at > ?2)",
                );
                let mut binds: Vec<Bind<'_>> =
                    vec![Bind::Text(q.swarm.as_str()), Bind::Int(now.as_millis())];
                let mut n = 3;
                let mut clause = |sql: &mut String, text: &str| {
                    sql.push_str(&text.replace("?N", &format!("?{n}")));
                    n += 1;
                };
                if let Some(ns) = &q.namespace {
                    clause(&mut sql, " AND m.namespace = ?N");
                    binds.push(Bind::Text(ns.as_str()));
                }
                if !q.prefix.is_empty() {
                    clause(&mut sql, " AND m.key >= ?N");
                    binds.push(Bind::Text(&q.prefix));
                    if let Some(u) = &upper {
                        clause(&mut sql, " AND m.key < ?N");
                        binds.push(Bind::Text(u));
                    }
                }
                if let Some(tag) = &q.tag {
                    clause(&mut sql, " AND EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?N)");
                    binds.push(Bind::Text(tag));
                }
                if let Some((ans, akey)) = after {
                    clause(&mut sql, " AND (m.namespace, m.key) > (?N");
                    binds.push(Bind::Text(ans));
                    clause(&mut sql, ", ?N)");
                    binds.push(Bind::Text(akey));
                }
                if let Some((wns, wkey)) = &window_end {
                    clause(&mut sql, " AND (m.namespace, m.key) <= (?N");
                    binds.push(Bind::Text(wns));
                    clause(&mut sql, ", ?N)");
                    binds.push(Bind::Text(wkey));
                }
                let pred = sql_predicate(p, Action::Read, ResourceType::Memory, COLS, now, n);
                push_pred(&mut binds, &pred);
                sql.push_str(&format!(" AND {} ORDER BY m.namespace, m.key", pred.sql()));

                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(params_from_iter(binds))?;
                let mut hits = Vec::new();
                let mut hit_keys = Vec::new();
                let (mut examined, mut unreadable, mut decoded) = (0u64, 0u64, 0usize);
                let mut last: Option<(String, String)> = None;
                let mut stopped_early = false;
                while let Some(r) = rows.next()? {
                    if hits.len() >= q.limit || (examined > 0 && decoded >= q.byte_budget) {
                        stopped_early = true;
                        break;
                    }
                    let c = Candidate {
                        namespace: r.get(0)?,
                        key: r.get(1)?,
                        level: r.get(2)?,
                        owner: r.get(3)?,
                        team: r.get(4)?,
                        value_type: r.get(5)?,
                        value: r.get(6)?,
                        size: r.get(7)?,
                        version: r.get(8)?,
                        tags: r.get(9)?,
                        updated_at: r.get(10)?,
                        expires_at: r.get(11)?,
                    };
                    examined += 1;
                    decoded = decoded.saturating_add(usize::try_from(c.size).unwrap_or(0));
                    last = Some((c.namespace.clone(), c.key.clone()));
                    let key = RecordKey::parse(q.swarm.as_str(), &c.namespace, &c.key)
                        .map_err(|e| StoreError::Corrupt(format!("stored key: {e}")))?;
                    let scope = parse_scope(c.owner.as_deref(), c.team.as_deref(), c.level)?;
                    let vt = ValueType::parse(&c.value_type)?;
                    let value = match shared.open(&key, &scope, vt, &c.value) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(key = %key, error = %e, "search skipped a record whose value does not open");
                            unreadable += 1;
                            continue;
                        }
                    };
                    let Some(text) = searchable(&value) else { continue };
                    let Some(snippet) = matches(&text, &q.terms, q.snippet_chars) else { continue };
                    // Like a value that does not open: skipped and counted, not the end of
                    // the search.
                    let tags = match parse_tags(&c.tags) {
                        Ok(tags) => tags,
                        Err(e) => {
                            tracing::warn!(key = %key, error = %e, "search skipped a record whose tags are corrupt");
                            unreadable += 1;
                            continue;
                        }
                    };
                    hit_keys.push(key.clone());
                    hits.push(SearchHit {
                        namespace: key.namespace().clone(),
                        key: key.key().clone(),
                        level: scope.level,
                        owner: scope.owner,
                        team: scope.team,
                        value_type: vt,
                        version: u64_of(c.version),
                        size: u64_of(c.size),
                        tags,
                        updated_at: Timestamp::from_millis(c.updated_at),
                        expires_at: c.expires_at.map(Timestamp::from_millis),
                        snippet,
                    });
                }
                // Where to go on from: the last row looked at when this call stopped on its
                // own budget, the window's end when the window did not reach the end of
                // the range, nothing when the range was searched to its end.
                // The last row looked at is one the caller can see; the window's end may
                // not be.
                let next = if stopped_early {
                    last.map(|at| (at, Exposure::Visible))
                } else {
                    window_end.map(|end| (end, Exposure::MaybeHidden))
                };
                let next = next
                    .map(|((ns, key), exposure)| cursors.seal(&binding, &ns, &key, exposure))
                    .transpose()?;
                let resume = hit_keys
                    .iter()
                    .map(|k: &RecordKey| {
                        let (ns, key) = (k.namespace().as_str(), k.key().as_str());
                        cursors.seal(&binding, ns, key, Exposure::Visible)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((SearchPage { hits, next, examined, unreadable, resume }, hit_keys))
            })?;
            for key in &hit_keys {
                shared.after_read(who, key, now, "memory.search");
            }
            Ok(page)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_term_must_match_case_insensitively() {
        let terms = vec![fold("Deploy"), fold("FRIDAY")];
        assert!(matches("we deploy on friday", &terms, 40).is_some());
        assert!(matches("we deploy on monday", &terms, 40).is_none());
        let terms = vec![fold("ÉTÉ")];
        assert!(matches("un bel été", &terms, 40).is_some());
    }

    #[test]
    fn snippets_are_bounded_and_marked_where_cut() {
        let text = format!("{}needle{}", "a".repeat(500), "b".repeat(500));
        let s = matches(&text, &[fold("needle")], 60).unwrap();
        assert!(s.chars().count() <= 60, "{} chars: {s}", s.chars().count());
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("needle"), "{s}");
        // Short text is whole, without ellipses.
        assert_eq!(matches("find the needle", &[fold("needle")], 60).unwrap(), "find the needle");
        // Control characters do not reach the snippet.
        assert_eq!(matches("a\nneedle\tb", &[fold("needle")], 60).unwrap(), "a needle b");
    }

    #[test]
    fn offsets_map_back_through_folding_that_changes_lengths() {
        // 'İ' (2 bytes) folds to "i̇" (3 bytes): the match after it must still be found in
        // the original at the right place.
        let text = "İİİ needle";
        let s = matches(text, &[fold("needle")], 16).unwrap();
        assert!(s.contains("needle"), "{s}");
        assert_eq!(original_offset(text, fold("İİİ ").len()), "İİİ ".len());
    }

    #[test]
    fn queries_are_validated() {
        let swarm = SwarmId::new("s").unwrap();
        assert!(SearchQuery::new(swarm.clone(), "   ").is_err());
        assert!(SearchQuery::new(swarm.clone(), &"x".repeat(300)).is_err());
        let many: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
        assert!(SearchQuery::new(swarm.clone(), &many.join(" ")).is_err());
        let q = SearchQuery::new(swarm.clone(), "A a b").unwrap();
        assert_eq!(q.terms, ["a", "b"]);
    }

    #[test]
    fn the_binding_tells_queries_and_principals_apart() {
        let swarm = SwarmId::new("s").unwrap();
        let ann = Identity::Agent(AgentId::new("ann").unwrap());
        let bob = Identity::Agent(AgentId::new("bob").unwrap());
        let q = SearchQuery::new(swarm.clone(), "needle").unwrap();
        let ns = Namespace::new("n").unwrap();
        let bindings = [
            q.binding(&ann),
            q.binding(&bob),
            q.binding(&Identity::System),
            q.clone().prefix("a").binding(&ann),
            q.clone().tag("a").binding(&ann),
            q.clone().namespace(ns).binding(&ann),
            SearchQuery::new(swarm.clone(), "needle hay").unwrap().binding(&ann),
            SearchQuery::new(SwarmId::new("t").unwrap(), "needle").unwrap().binding(&ann),
        ];
        for (i, a) in bindings.iter().enumerate() {
            for b in &bindings[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The page size, snippet length and case of the words do not matter.
        let same = SearchQuery::new(swarm, "NEEDLE").unwrap().limit(3).snippet_chars(40);
        assert_eq!(same.binding(&ann), q.binding(&ann));
    }
}

//! Key patterns for `keys`: `*` matches any run of characters, `?` exactly one, and `\`
//! makes the next character literal. Everything else is literal, including SQL's `%` and
//! `_`, SQLite GLOB's `[`, and quotes. Patterns are translated to SQLite `GLOB` with every
//! special character of GLOB escaped, and bound as parameters, never spliced into SQL.

use crate::error::{Result, StoreError};

/// One element of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyRun,
    AnyOne,
}

/// A parsed key pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    tokens: Vec<Token>,
}

impl KeyPattern {
    /// Longest pattern accepted, in bytes.
    pub const MAX_LEN: usize = 2048;

    /// Parses a pattern; an empty pattern matches every key.
    pub fn parse(pattern: &str) -> Result<Self> {
        if pattern.len() > Self::MAX_LEN {
            return Err(StoreError::invalid(format!(
                "pattern is longer than {} bytes",
                Self::MAX_LEN
            )));
        }
        if pattern.is_empty() {
            return Ok(Self { tokens: vec![Token::AnyRun] });
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Literal(escaped),
                    None => {
                        return Err(StoreError::invalid(
                            "pattern ends with an unfinished escape '\\'",
                        ));
                    }
                },
                other => Token::Literal(other),
            });
        }
        Ok(Self { tokens })
    }

    /// A pattern matching exactly `key`.
    pub fn literal(key: &str) -> Self {
        Self { tokens: key.chars().map(Token::Literal).collect() }
    }

    /// The SQLite `GLOB` pattern with the same meaning.
    pub(crate) fn to_sqlite_glob(&self) -> String {
        let mut out = String::with_capacity(self.tokens.len() + 8);
        for t in &self.tokens {
            match t {
                Token::AnyRun => out.push('*'),
                Token::AnyOne => out.push('?'),
                // In GLOB a bracket expression holding one character matches it literally.
                Token::Literal(c @ ('*' | '?' | '[')) => {
                    out.push('[');
                    out.push(*c);
                    out.push(']');
                }
                Token::Literal(c) => out.push(*c),
            }
        }
        out
    }

    /// The literal text every matching key starts with, to narrow the index range.
    pub(crate) fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether `key` matches. This is the reference the SQL translation is tested
    /// against, and what in-memory filters (watch) use.
    pub fn matches(&self, key: &str) -> bool {
        let chars: Vec<char> = key.chars().collect();
        // Classic wildcard matching with backtracking to the last `*`.
        let (mut p, mut k) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while k < chars.len() {
            match self.tokens.get(p) {
                Some(Token::AnyOne) => {
                    p += 1;
                    k += 1;
                }
                Some(Token::Literal(c)) if *c == chars[k] => {
                    p += 1;
                    k += 1;
                }
                Some(Token::AnyRun) => {
                    star = Some((p, k));
                    p += 1;
                }
                _ => match star {
                    Some((sp, sk)) => {
                        p = sp + 1;
                        k = sk + 1;
                        star = Some((sp, sk + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
    }
}

/// The smallest string greater than every string starting with `prefix`, if any: the
/// exclusive upper bound of a prefix range.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_a_shell_glob() {
        let p = KeyPattern::parse("user:*:name").unwrap();
        assert!(p.matches("user:1:name"));
        assert!(p.matches("user::name"));
        assert!(!p.matches("user:1:email"));
        let q = KeyPattern::parse("a?c").unwrap();
        assert!(q.matches("abc") && q.matches("a€c") && !q.matches("ac"));
    }

    #[test]
    fn sql_and_glob_specials_are_literal() {
        let p = KeyPattern::parse("50%_off[1]").unwrap();
        assert!(p.matches("50%_off[1]"));
        assert!(!p.matches("50xyoff[1]"));
        assert_eq!(p.to_sqlite_glob(), "50%_off[[]1]");
        let e = KeyPattern::parse(r"a\*b\?c\\").unwrap();
        assert!(e.matches(r"a*b?c\"));
        assert!(!e.matches("axbyc\\"));
        assert_eq!(e.to_sqlite_glob(), r"a[*]b[?]c\");
    }

    #[test]
    fn unfinished_escape_is_an_error() {
        assert!(KeyPattern::parse("abc\\").is_err());
    }

    #[test]
    fn prefix_and_successor() {
        let p = KeyPattern::parse("user:*").unwrap();
        assert_eq!(p.literal_prefix(), "user:");
        assert_eq!(prefix_successor("user:").as_deref(), Some("user;"));
        assert_eq!(prefix_successor(""), None);
    }
}

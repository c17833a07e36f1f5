//! Small helpers shared by every module that builds SQL: bound values and the ACL
//! predicate's parameters.

use rusqlite::types::{ToSql, ToSqlOutput};
use swarm_acl::{SqlParam, SqlPredicate};

/// A value bound to a statement: text, optional text or an integer.
pub(crate) enum Bind<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Blob(&'a [u8]),
}

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Bind::Text(s) => s.to_sql(),
            Bind::OptText(s) => s.to_sql(),
            Bind::Int(n) => n.to_sql(),
            Bind::OptInt(n) => n.to_sql(),
            Bind::Blob(b) => b.to_sql(),
        }
    }
}

/// The predicate's parameters, in order, for chaining after a statement's own without
/// collecting them (a vector per read showed in profiles of GET).
pub(crate) fn pred_binds<'a, 'p: 'a>(
    pred: &'a SqlPredicate<'p>,
) -> impl Iterator<Item = Bind<'p>> + 'a {
    pred.params().iter().map(|p| match *p {
        SqlParam::Text(s) => Bind::Text(s),
        SqlParam::Int(n) => Bind::Int(n),
    })
}

/// Appends the predicate's parameters, in order.
pub(crate) fn push_pred<'a>(binds: &mut Vec<Bind<'a>>, pred: &SqlPredicate<'a>) {
    binds.extend(pred_binds(pred));
}

/// A stored integer as `u64` (negative values, which CHECKs exclude, read as 0).
pub(crate) fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `u64` as a stored integer, saturating.
pub(crate) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

//! A minimal RESP2 client over a plain `TcpStream`: enough to ping, publish raw bytes
//! (forged messages included) and clean up keys, without the `redis` crate, so tests can
//! talk to Redis the way an arbitrary client would.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` bulk string, `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` array, `None` for the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer of an `Int` reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text of a simple or bulk string reply.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Where a Redis server is, parsed from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisAddr {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
}

impl RedisAddr {
    /// Parses a `redis://` URL (no percent-decoding: test URLs are plain).
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.trim().strip_prefix("redis://")?;
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (a, d.parse().ok()?),
            None => (rest, 0),
        };
        let (login, hostport) = match authority.rsplit_once('@') {
            Some((l, h)) => (Some(l), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 6379),
        };
        let (username, password) = match login.map(|l| l.split_once(':').unwrap_or((l, ""))) {
            None => (None, None),
            Some((u, p)) => {
                ((!u.is_empty()).then(|| u.to_owned()), (!p.is_empty()).then(|| p.to_owned()))
            }
        };
        (!host.is_empty()).then(|| Self { host: host.to_owned(), port, username, password, db })
    }

    /// Back to a URL.
    pub fn url(&self) -> String {
        let login = match (&self.username, &self.password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (None, Some(p)) => format!(":{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        format!("redis://{login}{}:{}/{}", self.host, self.port, self.db)
    }
}

/// A connection speaking RESP2.
pub struct RespClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RespClient {
    /// Connects (and logs in, and selects the database) with `timeout` for everything.
    pub fn connect(addr: &RedisAddr, timeout: Duration) -> io::Result<Self> {
        use std::net::ToSocketAddrs as _;
        let target = (addr.host.as_str(), addr.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host did not resolve"))?;
        let stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let mut client = Self { reader: BufReader::new(stream.try_clone()?), writer: stream };
        if let Some(password) = &addr.password {
            let reply = match &addr.username {
                Some(user) => client.command(&[b"AUTH", user.as_bytes(), password.as_bytes()])?,
                None => client.command(&[b"AUTH", password.as_bytes()])?,
            };
            if let Resp::Error(e) = reply {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
            }
        }
        if addr.db != 0 {
            let db = addr.db.to_string();
            client.command(&[b"SELECT", db.as_bytes()])?;
        }
        Ok(client)
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> io::Result<Resp> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)?;
        self.read()
    }

    /// `PING`; true when the answer is `PONG`.
    pub fn ping(&mut self) -> io::Result<bool> {
        Ok(self.command(&[b"PING"])? == Resp::Simple("PONG".into()))
    }

    /// `PUBLISH channel payload`; the number of subscribers that got it.
    pub fn publish(&mut self, channel: &str, payload: &[u8]) -> io::Result<i64> {
        let reply = self.command(&[b"PUBLISH", channel.as_bytes(), payload])?;
        reply.as_int().ok_or_else(|| io::Error::other(format!("PUBLISH answered {reply:?}")))
    }

    /// Deletes every key matching the glob (SCAN + DEL); returns how many.
    pub fn delete_matching(&mut self, pattern: &str) -> io::Result<u64> {
        let mut cursor = b"0".to_vec();
        let mut deleted = 0;
        loop {
            let reply =
                self.command(&[b"SCAN", &cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000"])?;
            let Resp::Array(Some(parts)) = reply else {
                return Err(io::Error::other(format!("SCAN answered {reply:?}")));
            };
            let (Some(Resp::Bulk(Some(next))), Some(Resp::Array(Some(keys)))) =
                (parts.first(), parts.get(1))
            else {
                return Err(io::Error::other("SCAN reply has an unexpected shape"));
            };
            let keys: Vec<&[u8]> = keys
                .iter()
                .filter_map(|k| if let Resp::Bulk(Some(k)) = k { Some(k.as_slice()) } else { None })
                .collect();
            if !keys.is_empty() {
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(keys);
                deleted += self.command(&args)?.as_int().unwrap_or(0).unsigned_abs();
            }
            if next.as_slice() == b"0" {
                return Ok(deleted);
            }
            cursor.clone_from(next);
        }
    }

    /// Keys matching the glob (SCAN).
    pub fn keys_matching(&mut self, pattern: &str) -> io::Result<Vec<String>> {
        let mut cursor = b"0".to_vec();
        let mut out = Vec::new();
        loop {
            let reply =
                self.command(&[b"SCAN", &cursor, b"MATCH", pattern.as_bytes(), b"COUNT", b"1000"])?;
            let Resp::Array(Some(parts)) = reply else {
                return Err(io::Error::other(format!("SCAN answered {reply:?}")));
            };
            let (Some(Resp::Bulk(Some(next))), Some(Resp::Array(Some(keys)))) =
                (parts.first(), parts.get(1))
            else {
                return Err(io::Error::other("SCAN reply has an unexpected shape"));
            };
            out.extend(keys.iter().filter_map(Resp::as_text));
            if next.as_slice() == b"0" {
                return Ok(out);
            }
            cursor.clone_from(next);
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read(&mut self) -> io::Result<Resp> {
        let line = self.line()?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad RESP line {line:?}"));
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let number = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(number()?),
            "$" => match number()? {
                n if n < 0 => Resp::Bulk(None),
                n => {
                    let mut buf = vec![0; usize::try_from(n).map_err(|_| bad())? + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(buf.len() - 2);
                    Resp::Bulk(Some(buf))
                }
            },
            "*" => match number()? {
                n if n < 0 => Resp::Array(None),
                n => {
                    let mut items = Vec::new();
                    for _ in 0..n {
                        items.push(self.read()?);
                    }
                    Resp::Array(Some(items))
                }
            },
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let a = RedisAddr::parse("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.db, a.password.as_deref()),
            ("127.0.0.1", 6390, 2, None)
        );
        let a = RedisAddr::parse("redis://u:p@h").unwrap();
        assert_eq!(
            (a.port, a.username.as_deref(), a.password.as_deref()),
            (6379, Some("u"), Some("p"))
        );
        assert_eq!(a.url(), "redis://u:p@h:6379/0");
        assert!(RedisAddr::parse("http://h").is_none());
        assert!(RedisAddr::parse("redis://h:x").is_none());
    }
}

//! RESP2 reply bytes → stream entries, for the reader's own connection
//! ([`super::wire`]): one pass, one allocation per id, field list, name and
//! value, no intermediate reply tree.

use super::entry::RawField;
use super::entry::{Entry, ReplyError};

/// The length of the first complete reply in `buf`, or `None` while more
/// bytes are needed. Skims without allocating.
pub(crate) fn complete_reply_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    let mut c = Cursor { buf, pos: 0 };
    match c.skip() {
        Ok(()) => Ok(Some(c.pos)),
        Err(Parse::Incomplete) => Ok(None),
        Err(Parse::Bad(e)) => Err(e),
    }
}

/// Parses one complete `XREADGROUP ... STREAMS <stream> <id>` reply. The outer
/// error is a malformed reply; the inner one an error reply from Redis (its
/// text, e.g. `NOGROUP ...`). A nil reply (the block timed out) is no entries.
pub(crate) fn parse_read_reply_bytes(
    buf: &[u8],
    attempt: u32,
) -> Result<Result<Vec<Entry>, String>, ReplyError> {
    let mut c = Cursor { buf, pos: 0 };
    let parsed = match buf.first() {
        Some(b'-') => c
            .line()
            .map(|l| Err(String::from_utf8_lossy(&l[1..]).into_owned())),
        _ => c.read_reply(attempt).map(Ok),
    };
    parsed.map_err(|e| match e {
        Parse::Bad(e) => e,
        Parse::Incomplete => ReplyError("truncated XREADGROUP reply".into()),
    })
}

enum Parse {
    Incomplete,
    Bad(ReplyError),
}

fn bad(what: impl Into<String>) -> Parse {
    Parse::Bad(ReplyError(what.into()))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The bytes up to the next CRLF, consuming it.
    fn line(&mut self) -> Result<&'a [u8], Parse> {
        // Header lines are a few bytes long; payloads are skipped by their
        // length, never scanned.
        let rest = &self.buf[self.pos..];
        let lf = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(Parse::Incomplete)?;
        let end = lf.checked_sub(1).filter(|&cr| rest[cr] == b'\r');
        let end = end.ok_or_else(|| bad("reply line not ended by CRLF"))?;
        self.pos += lf + 1;
        Ok(&rest[..end])
    }

    /// A type byte and its integer (`*3`, `$12`, `:5`).
    fn header(&mut self) -> Result<(u8, i64), Parse> {
        let line = self.line()?;
        let (&kind, digits) = line.split_first().ok_or_else(|| bad("empty reply line"))?;
        let n = parse_int(digits).ok_or_else(|| {
            bad(format!(
                "bad length in reply line {:?}",
                String::from_utf8_lossy(line)
            ))
        })?;
        Ok((kind, n))
    }

    fn skip(&mut self) -> Result<(), Parse> {
        match self.buf.get(self.pos) {
            None => Err(Parse::Incomplete),
            Some(b'+' | b'-' | b':') => self.line().map(drop),
            Some(b'$') => self.bulk().map(drop),
            Some(b'*') => {
                let (_, n) = self.header()?;
                (0..n.max(0)).try_for_each(|_| self.skip())
            }
            Some(&b) => Err(bad(format!("unexpected reply type byte {:?}", b as char))),
        }
    }

    /// A bulk string (`None` for nil).
    fn bulk(&mut self) -> Result<Option<&'a [u8]>, Parse> {
        let (kind, len) = self.header()?;
        if kind != b'$' {
            return Err(bad(format!(
                "expected a bulk string, got {:?}",
                kind as char
            )));
        }
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        let end = self.pos + len;
        if self.buf.len() < end + 2 {
            return Err(Parse::Incomplete);
        }
        let bytes = &self.buf[self.pos..end];
        self.pos = end + 2;
        Ok(Some(bytes))
    }

    /// An array's length (`None` for a nil array).
    fn array(&mut self) -> Result<Option<usize>, Parse> {
        let (kind, n) = self.header()?;
        if kind != b'*' {
            return Err(bad(format!("expected an array, got {:?}", kind as char)));
        }
        Ok(usize::try_from(n).ok())
    }

    /// `[[name, [entry...]]...]` or nil.
    fn read_reply(&mut self, attempt: u32) -> Result<Vec<Entry>, Parse> {
        let mut out = Vec::new();
        for _ in 0..self.array()?.unwrap_or(0) {
            if self.array()? != Some(2) {
                return Err(bad("expected [stream, entries]"));
            }
            self.bulk()?; // The stream name: the one we asked for.
            let count = self.array()?.unwrap_or(0);
            out.reserve(count);
            for _ in 0..count {
                out.push(self.entry(attempt)?);
            }
        }
        Ok(out)
    }

    /// `[id, [f1, v1, ...] | nil]`.
    fn entry(&mut self, attempt: u32) -> Result<Entry, Parse> {
        if self.array()? != Some(2) {
            return Err(bad("expected [id, fields]"));
        }
        let id = self.bulk()?.ok_or_else(|| bad("nil entry id"))?;
        let id = std::str::from_utf8(id)
            .map_err(|_| bad("entry id is not UTF-8"))?
            .to_owned();
        let fields = match self.array()? {
            None => None,
            Some(n) if n % 2 != 0 => return Err(bad("odd number of field names and values")),
            Some(n) => {
                let mut fields = Vec::with_capacity(n / 2);
                for _ in 0..n / 2 {
                    let name = self.bulk()?.ok_or_else(|| bad("nil field name"))?;
                    let value = self.bulk()?.ok_or_else(|| bad("nil field value"))?;
                    fields.push(RawField {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    });
                }
                Some(fields)
            }
        };
        Ok(Entry {
            id,
            fields,
            attempt,
        })
    }
}

/// A RESP integer (`-1`, `256`), without going through `str`.
fn parse_int(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"*1\r\n*2\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$4\r\ndata\r\n$2\r\n\x00\xff\r\n$2\r\nts\r\n$1\r\n7\r\n*2\r\n$3\r\n2-0\r\n*-1\r\n";

    #[test]
    fn parses_entries_and_deleted_ones() {
        assert_eq!(complete_reply_len(REPLY).unwrap(), Some(REPLY.len()));
        let entries = parse_read_reply_bytes(REPLY, 1).unwrap().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, "1-0");
        let fields = entries[0].fields.as_ref().unwrap();
        assert_eq!(
            (fields[0].name.as_slice(), fields[0].value.as_slice()),
            (&b"data"[..], &[0u8, 255][..])
        );
        assert_eq!(
            (fields[1].name.as_slice(), fields[1].value.as_slice()),
            (&b"ts"[..], &b"7"[..])
        );
        assert_eq!(entries[1].fields, None);
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        for cut in 0..REPLY.len() {
            assert_eq!(
                complete_reply_len(&REPLY[..cut]).unwrap(),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn nil_errors_and_garbage() {
        assert!(
            parse_read_reply_bytes(b"*-1\r\n", 1)
                .unwrap()
                .unwrap()
                .is_empty()
        );
        let err = parse_read_reply_bytes(b"-NOGROUP No such key\r\n", 1)
            .unwrap()
            .unwrap_err();
        assert!(err.starts_with("NOGROUP"));
        assert!(complete_reply_len(b"?what\r\n").is_err());
        assert!(complete_reply_len(b"*1x\r\n").is_err());
        assert_eq!(
            (parse_int(b"-1"), parse_int(b"256"), parse_int(b"")),
            (Some(-1), Some(256), None)
        );
        assert!(
            parse_read_reply_bytes(
                b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\na\r\n",
                1
            )
            .is_err()
        );
    }
}

/// Property tests: any reply Redis could send parses back to exactly the
/// entries it encodes, every prefix of it asks for more bytes, and no byte
/// string at all makes the parser panic or read past its input.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
    }

    /// Encodes entries the way Redis writes an `XREADGROUP` reply (RESP2).
    /// An entry id and its fields (`None`: deleted while pending).
    type TestEntry = (String, Option<Vec<(Vec<u8>, Vec<u8>)>>);

    fn encode(stream: &[u8], entries: &[TestEntry]) -> Vec<u8> {
        let mut out = b"*1\r\n*2\r\n".to_vec();
        bulk(&mut out, stream);
        out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
        for (id, fields) in entries {
            out.extend_from_slice(b"*2\r\n");
            bulk(&mut out, id.as_bytes());
            match fields {
                None => out.extend_from_slice(b"*-1\r\n"),
                Some(fields) => {
                    out.extend_from_slice(format!("*{}\r\n", fields.len() * 2).as_bytes());
                    for (name, value) in fields {
                        bulk(&mut out, name);
                        bulk(&mut out, value);
                    }
                }
            }
        }
        out
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    prop_compose! {
        fn entry()(ms in any::<u64>(), seq in any::<u32>(),
                   fields in prop::option::weighted(0.9, prop::collection::vec((bytes(24), bytes(64)), 0..6)))
                  -> TestEntry {
            (format!("{ms}-{seq}"), fields)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_reply_round_trips_byte_for_byte(
            stream in bytes(32),
            entries in prop::collection::vec(entry(), 0..8),
            attempt in 1u32..100,
        ) {
            let reply = encode(&stream, &entries);
            prop_assert_eq!(complete_reply_len(&reply).unwrap(), Some(reply.len()));
            for cut in 0..reply.len() {
                prop_assert_eq!(complete_reply_len(&reply[..cut]).unwrap(), None);
            }
            let parsed = parse_read_reply_bytes(&reply, attempt).unwrap().unwrap();
            let expected: Vec<Entry> = entries
                .iter()
                .map(|(id, fields)| Entry {
                    id: id.clone(),
                    fields: fields.as_ref().map(|f| {
                        f.iter()
                            .map(|(name, value)| RawField { name: name.clone(), value: value.clone() })
                            .collect()
                    }),
                    attempt,
                })
                .collect();
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn garbage_never_panics(noise in bytes(256)) {
            let _ = complete_reply_len(&noise);
            let _ = parse_read_reply_bytes(&noise, 1);
        }

        #[test]
        fn a_corrupted_reply_is_an_error_or_a_reply_never_a_panic(
            entries in prop::collection::vec(entry(), 1..4),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut reply = encode(b"s", &entries);
            let i = at.index(reply.len());
            reply[i] = byte;
            if let Ok(Some(len)) = complete_reply_len(&reply) {
                prop_assert!(len <= reply.len());
                let _ = parse_read_reply_bytes(&reply[..len], 1);
            }
        }
    }
}

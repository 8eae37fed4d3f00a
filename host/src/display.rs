//! Showing stored bytes to people: producers control entry names and values,
//! so every byte that could drive a terminal, forge a line or hide text is
//! escaped, and the escaping is unambiguous (a literal `\` is shown as `\\`).

use std::fmt::Write;

/// `bytes` as one line of text: printable UTF-8 as is; `\\`, `\n`, `\r`, `\t`;
/// other control characters and invalid UTF-8 bytes as `\xNN`; C1 controls
/// and bidirectional overrides/isolates as `\u{NNNN}`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`escape_bytes`] for text already known to be UTF-8.
pub fn escape_str(text: &str) -> String {
    escape_bytes(text.as_bytes())
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || is_invisible_override(c) => {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Characters that make a line read differently from what it contains.
fn is_invisible_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// How long ago `then_ms` (Unix milliseconds) was, relative to `now_ms`, in
/// the largest whole unit: `12s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let Some(secs) = now_ms.checked_sub(then_ms).map(|ms| ms / 1000) else {
        return "in the future".to_owned();
    };
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
pub fn timestamp(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Now in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_and_invalid_utf8_are_escaped_unambiguously() {
        assert_eq!(escape_bytes(b"plain text"), "plain text");
        assert_eq!(escape_bytes("naïve".as_bytes()), "naïve");
        assert_eq!(escape_bytes(b"\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(
            escape_bytes(b"x\ndlq.reason: forged"),
            "x\\ndlq.reason: forged"
        );
        assert_eq!(escape_bytes(b"k\xff"), "k\\xff");
        assert_ne!(escape_bytes(b"k\xff"), escape_bytes(b"k\xfe"));
        // A literal backslash sequence cannot pass for an escaped byte.
        assert_eq!(escape_bytes(b"k\\xff"), "k\\\\xff");
        assert_ne!(escape_bytes(b"k\\xff"), escape_bytes(b"k\xff"));
        assert_eq!(escape_str("a\u{202E}b\u{85}"), "a\\u{202e}b\\u{0085}");
        assert_eq!(escape_bytes(b"\x7f\r\t"), "\\x7f\\r\\t");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(ago(1_000, 13_500), "12s ago");
        assert_eq!(ago(0, 180_000), "3m ago");
        assert_eq!(ago(0, 5 * 3_600_000 + 1), "5h ago");
        assert_eq!(ago(0, 2 * 86_400_000), "2d ago");
        assert_eq!(ago(10, 5), "in the future");
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    }
}

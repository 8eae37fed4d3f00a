//! How the dashboard shows stored bytes: UTF-8 text with terminal and other
//! control characters replaced by visible escapes, JSON re-indented, anything
//! else as hex. Nothing is converted lossily without saying so: the kind tells
//! the page which form it got, and hex always round-trips.

use serde::Serialize;

/// Longest value shown whole; longer values are cut (and say so).
pub(crate) const MAX_SHOWN: usize = 64 * 1024;

/// One value as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Shown {
    /// `text`, `json` or `hex`.
    pub kind: &'static str,
    /// The displayable form.
    pub text: String,
    /// Bytes in the stored value.
    pub bytes: usize,
    /// Whether `text` shows only the first [`MAX_SHOWN`] bytes.
    pub truncated: bool,
}

/// Renders a stored value.
pub(crate) fn show(value: &[u8]) -> Shown {
    let truncated = value.len() > MAX_SHOWN;
    let head = &value[..value.len().min(MAX_SHOWN)];
    let (kind, text) = match std::str::from_utf8(head) {
        Ok(s) if !truncated && looks_like_json(s) => match indent_json(s) {
            Some(pretty) => ("json", neutralize(&pretty)),
            None => ("text", neutralize(s)),
        },
        Ok(s) => ("text", neutralize(s)),
        // A cut may split a character: still text if only the end is cut.
        Err(e) if truncated && e.error_len().is_none() => (
            "text",
            neutralize(&String::from_utf8_lossy(&head[..e.valid_up_to()])),
        ),
        Err(_) => ("hex", hex_dump(head)),
    };
    Shown {
        kind,
        text,
        bytes: value.len(),
        truncated,
    }
}

fn looks_like_json(s: &str) -> bool {
    matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

fn indent_json(s: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    serde_json::to_string_pretty(&v).ok()
}

/// A field or metadata name on one line: UTF-8 neutralised, anything else
/// with each byte outside printable ASCII as `\xNN` (lossless).
pub(crate) fn name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => neutralize(s),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// Replaces control characters (ESC and the rest of C0, DEL, C1) and
/// bidirectional overrides with `\u{..}` escapes; keeps newlines and tabs.
pub(crate) fn neutralize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let risky = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if risky {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Hex in rows of 16 bytes with offsets.
fn hex_dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:08x}  {}", i * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_show_every_byte() {
        assert_eq!(name(b"ok\x1b"), "ok\\u{1b}");
        assert_eq!(name(b"a\xff\x00b"), "a\\xff\\x00b");
    }

    #[test]
    fn json_is_indented() {
        let s = show(br#"{"order_id":7,"items":[1,2]}"#);
        assert_eq!(s.kind, "json");
        assert!(s.text.contains("\n  \"order_id\": 7"), "{}", s.text);
    }

    #[test]
    fn terminal_escapes_are_neutralised() {
        let s = show(b"\x1b[31mred\x07 \xe2\x80\xaeevil\nnext");
        assert_eq!(s.kind, "text");
        assert_eq!(s.text, "\\u{1b}[31mred\\u{7} \\u{202e}evil\nnext");
        // Inside JSON, re-encoding escapes it again: no raw ESC reaches the page.
        let j = show(br#"{"a":"\u001b[2J"}"#);
        assert_eq!(j.kind, "json");
        assert!(!j.text.contains('\x1b'), "{}", j.text);
        assert!(j.text.contains("\\u001b[2J"), "{}", j.text);
    }

    #[test]
    fn binary_is_hex() {
        let s = show(&[0xff, 0x00, 0x10, b'a']);
        assert_eq!(s.kind, "hex");
        assert_eq!(s.text, "00000000  ff 00 10 61");
        assert_eq!(s.bytes, 4);
    }

    #[test]
    fn long_values_are_cut_and_say_so() {
        let big = vec![b'a'; MAX_SHOWN + 10];
        let s = show(&big);
        assert!(s.truncated);
        assert_eq!(s.text.len(), MAX_SHOWN);
        assert_eq!(s.bytes, MAX_SHOWN + 10);
        let mut cut = vec![b'a'; MAX_SHOWN - 1];
        cut.extend("é".as_bytes());
        cut.push(b'z');
        assert_eq!(
            show(&cut).kind,
            "text",
            "a character split by the cut is still text"
        );
    }
}

//! Logs a long line full of terminal escape sequences 100,000 times, then accepts.
//!
//! Exercises the host's log rate limits, truncation and escaping of control characters.

use streamhost_sdk::{HandlerError, Message, handler};

const LINES: usize = 100_000;
/// One repeated chunk: colours, clear-screen, a window-title escape, and a
/// newline followed by text that imitates a host log line.
const CHUNK: &str = "\x1b[31mRED\x1b[0m \x1b[2J\x1b]0;pwned\x07 \r\nINFO streamhost: forged line ";
const CHUNKS_PER_LINE: usize = 64;

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    let line = CHUNK.repeat(CHUNKS_PER_LINE);
    for _ in 0..LINES {
        streamhost_sdk::log::warn(&line);
    }
    Ok(())
}

//! Logs a long line full of terminal escape sequences 100,000 times, then accepts.
//! With field `mode` = `empty`, logs an empty line 1,000,000 times instead; with
//! `print`, prints 100,000 lines to stdout.
//!
//! Exercises the host's log budget (per call as well as per byte), truncation
//! and escaping of control characters.

use streamhost_sdk::{HandlerError, Message, handler};

const LINES: usize = 100_000;
/// One repeated chunk: colours, clear-screen, a window-title escape, and a
/// newline followed by text that imitates a host log line.
const CHUNK: &str = "\x1b[31mRED\x1b[0m \x1b[2J\x1b]0;pwned\x07 \r\nINFO streamhost: forged line ";
const CHUNKS_PER_LINE: usize = 64;

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    match msg.field_str("mode") {
        Ok("empty") => {
            for _ in 0..1_000_000 {
                streamhost_sdk::log::info("");
            }
            return Ok(());
        }
        Ok("print") => {
            for i in 0..LINES {
                println!("printed line {i} \x1b[31mRED");
            }
            return Ok(());
        }
        _ => {}
    }
    let line = CHUNK.repeat(CHUNKS_PER_LINE);
    for _ in 0..LINES {
        streamhost_sdk::log::warn(&line);
    }
    Ok(())
}

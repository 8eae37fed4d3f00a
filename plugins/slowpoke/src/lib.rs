//! Takes 60 s per entry: field `mode` is `sleep` (blocks in the host) or `spin`
//! (busy-waits in Wasm); then accepts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use streamhost_sdk::{HandlerError, Message, handler};

const NAP: Duration = Duration::from_secs(60);

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    match msg.field_str("mode")? {
        "sleep" => std::thread::sleep(NAP),
        "spin" => spin(NAP),
        other => {
            return Err(HandlerError::reject(format!(
                "slowpoke: mode must be sleep or spin, got {other:?}"
            )));
        }
    }
    Ok(())
}

fn spin(duration: Duration) {
    let start = Instant::now();
    while black_box(start.elapsed()) < duration {}
}

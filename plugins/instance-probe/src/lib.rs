//! Shows whether an instance is fresh: counts the entries this instance has
//! handled and rejects with `handled N`; field `mode` = `panic` traps instead.
//!
//! After a trap the host must handle the next entry in a new instance, so the
//! count starts again at 1 (a reused instance would say 3, or refuse to run).
//! Field `leak_kib` = N keeps N KiB alive for the instance's lifetime: memory
//! that grows from entry to entry, as some guest runtimes' does.

use std::sync::atomic::{AtomicU32, Ordering};

use streamhost_sdk::{HandlerError, Message, handler};

/// Lives in the instance's linear memory: survives between entries only as
/// long as the instance does.
static HANDLED: AtomicU32 = AtomicU32::new(0);

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let handled = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(kib) = msg
        .field("leak_kib")
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
    {
        // Non-zero fill touches every page; leaked, so it is never reused.
        std::hint::black_box(Vec::leak(vec![0xAB_u8; kib << 10]));
    }
    if msg.field("mode") == Some(b"panic".as_slice()) {
        panic!("instance-probe: deliberate panic after {handled} entries");
    }
    Err(HandlerError::reject(format!("handled {handled}")))
}

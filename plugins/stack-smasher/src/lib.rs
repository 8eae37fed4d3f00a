//! Never returns: recurses without bound until the Wasm stack overflows.

use std::hint::black_box;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    black_box(descend(0));
    Ok(())
}

/// Frames are kept small on the linear-memory shadow stack, so the engine's
/// own stack limit (a stack-overflow trap) is hit first, not an out-of-bounds
/// access below the shadow stack.
fn descend(depth: u64) -> u64 {
    // Opaque to the optimizer, so the recursion is not provably infinite (and
    // not linted as such), yet never true at run time.
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = descend(depth + 1);
    // Work after the call: it is not a tail call, so it cannot become a loop.
    black_box(below)
}

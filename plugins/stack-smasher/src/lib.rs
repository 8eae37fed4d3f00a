//! Never returns: recurses without bound until the stack overflows.

use std::hint::black_box;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    black_box(descend(0));
    Ok(())
}

/// Each frame holds a buffer that is used again after the recursive call,
/// so the call is not a tail call and cannot become a loop.
fn descend(depth: u64) -> u64 {
    let mut frame = [depth; 32];
    black_box(&mut frame);
    // Opaque to the optimizer, so the recursion is not provably infinite (and
    // not linted as such), yet never true at run time.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let below = descend(depth + 1);
    black_box(&frame);
    below.wrapping_add(frame[0])
}

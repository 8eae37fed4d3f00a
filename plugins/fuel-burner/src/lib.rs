//! Never returns: spins forever, so only the host's CPU or time limit ends it.

use std::hint::black_box;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    let mut counter = 0u64;
    loop {
        // black_box makes every iteration observable, so the loop cannot be folded away.
        counter = black_box(counter.wrapping_add(1));
    }
}

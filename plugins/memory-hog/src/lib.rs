//! Never returns: keeps allocating 1 MiB blocks until the host's memory limit stops it.

use std::hint::black_box;

use streamhost_sdk::{HandlerError, Message, handler};

const MIB: usize = 1 << 20;

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Non-zero fill writes every page; black_box keeps the blocks from being elided.
        hoard.push(black_box(vec![0xAB; MIB]));
        black_box(&hoard);
    }
}

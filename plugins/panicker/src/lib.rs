//! Panics on every entry, which traps the instance.

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    panic!("panicker: deliberate panic on entry {}", msg.id());
}

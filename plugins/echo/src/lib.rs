//! Logs each entry's id and field names at info level and accepts everything.

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let names: Vec<&str> = msg.fields().map(|(name, _)| name).collect();
    streamhost_sdk::info!("echo: entry {} fields [{}]", msg.id(), names.join(", "));
    Ok(())
}

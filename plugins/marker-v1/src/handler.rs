// Shared by marker-v1, marker-v2 and marker-large: emits one entry to `out`
// per input entry, marked with the version that handled it. The emit commits
// with the ack, so `out` shows exactly which version handled each delivery.

use streamhost_sdk::{HandlerError, Message, effects, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    effects::emit("out", [("version", VERSION.to_owned()), ("source_id", msg.id().to_owned()), ("extra", extra())])?;
    Ok(())
}

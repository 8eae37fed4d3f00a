//! Asks for a retry while the delivery attempt is at most field `fail_times`
//! (an integer, 0 when missing), then accepts.

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let fail_times: u32 = match msg.field("fail_times") {
        Some(_) => msg.field_parse("fail_times")?,
        None => 0,
    };
    let attempt = msg.attempt();
    if attempt <= fail_times {
        return Err(HandlerError::retry(format!(
            "flaky: attempt {attempt} of fail_times {fail_times}"
        )));
    }
    Ok(())
}

//! A test handler that leaves a trace of its work: logs `recorder handled <id>
//! attempt <n>` at info for every invocation (tests read the host's log to
//! know which ids a handler saw), then behaves as the entry asks:
//! field `sleep_ms` (integer) sleeps first, so a host holds entries in flight;
//! field `reject` rejects; field `fail_times` (integer) asks for a retry while
//! the attempt is at most that number; otherwise accepts.

use std::time::Duration;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let attempt = msg.attempt();
    streamhost_sdk::info!("recorder handled {} attempt {attempt}", msg.id());
    if msg.field("sleep_ms").is_some() {
        let ms: u64 = msg.field_parse("sleep_ms")?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    if msg.field("reject").is_some() {
        return Err(HandlerError::reject("recorder: asked to reject"));
    }
    let fail_times: u32 = match msg.field("fail_times") {
        Some(_) => msg.field_parse("fail_times")?,
        None => 0,
    };
    if attempt <= fail_times {
        return Err(HandlerError::retry(format!(
            "recorder: attempt {attempt} of fail_times {fail_times}"
        )));
    }
    Ok(())
}

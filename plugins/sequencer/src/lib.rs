//! A test handler for ordering and sharding: logs `sequencer <key> <seq>
//! attempt <n> stream <stream>` for every invocation (tests read the host's
//! log as the ledger of what ran, in order), from fields `key` and `seq`;
//! sleeps field `sleep_ms` (so throughput measures parallelism, not CPU);
//! asks for a retry on the first attempt when field `fail_once` is present.

use std::time::Duration;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let attempt = msg.attempt();
    let text = |name: &str| {
        msg.field(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "-".to_owned())
    };
    streamhost_sdk::info!(
        "sequencer {} {} attempt {attempt} stream {}",
        text("key"),
        text("seq"),
        msg.stream()
    );
    if msg.field("sleep_ms").is_some() {
        let ms: u64 = msg.field_parse("sleep_ms")?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    if msg.field("fail_once").is_some() && attempt == 1 {
        return Err(HandlerError::retry("sequencer: failing the first attempt"));
    }
    Ok(())
}

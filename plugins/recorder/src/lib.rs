//! A test handler that leaves a trace of its work: logs `recorder handled <id>
//! attempt <n>` at info for every invocation (tests read the host's log to
//! know which ids a handler saw), then behaves as the entry asks:
//! field `sleep_ms` (integer) sleeps first, so a host holds entries in flight;
//! field `reject` rejects; field `fail_times` (integer) asks for a retry while
//! the attempt is at most that number; otherwise accepts.
//!
//! On a list, sorted-set or Pub/Sub source the payload is one field `data`:
//! its first word is logged as `recorder data <word> attempt <n> stream
//! <stream>` (the id of such a delivery is the host's token), and its other
//! words ask for the same behaviour: `sleep_ms=N`, `reject`, `fail_times=N`.

use std::time::Duration;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let attempt = msg.attempt();
    streamhost_sdk::info!("recorder handled {} attempt {attempt}", msg.id());
    let data = msg
        .field("data")
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    let mut words = data.split_whitespace();
    if let Some(first) = words.next() {
        streamhost_sdk::info!(
            "recorder data {first} attempt {attempt} stream {}",
            msg.stream()
        );
    }
    let word = |name: &str| -> Option<String> {
        data.split_whitespace()
            .skip(1)
            .find_map(|w| match w.split_once('=') {
                Some((k, v)) if k == name => Some(v.to_owned()),
                None if w == name => Some(String::new()),
                _ => None,
            })
    };
    let bad = |name: &str| HandlerError::reject(format!("recorder: {name} is not a number"));
    let sleep_ms: Option<u64> = match (msg.field("sleep_ms"), word("sleep_ms")) {
        (Some(_), _) => Some(msg.field_parse("sleep_ms")?),
        (None, Some(v)) => Some(v.parse().map_err(|_| bad("sleep_ms"))?),
        _ => None,
    };
    if let Some(ms) = sleep_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if msg.field("reject").is_some() || word("reject").is_some() {
        return Err(HandlerError::reject("recorder: asked to reject"));
    }
    let fail_times: u32 = match (msg.field("fail_times"), word("fail_times")) {
        (Some(_), _) => msg.field_parse("fail_times")?,
        (None, Some(v)) => v.parse().map_err(|_| bad("fail_times"))?,
        _ => 0,
    };
    if attempt <= fail_times {
        return Err(HandlerError::retry(format!(
            "recorder: attempt {attempt} of fail_times {fail_times}"
        )));
    }
    Ok(())
}

//! Test plugin for the 0.2 message source and the `push` and `zadd`
//! effects. Logs one line per invocation:
//! `source-probe id=<id> attempt=<n> <source> data=<hex>`, where `<source>`
//! is `stream name=<stream> entry=<id>`, `pubsub channel=<hex> pattern=<p|->`,
//! `list key=<key>` or `sorted-set key=<key> score=<score>`.
//!
//! Then acts on the words of its `data` field (text): `push=<key>` pushes
//! the whole data onto list `<key>`, `zadd=<key>` adds it to sorted set
//! `<key>` with score `score=<n>` (default 0), then `reject` rejects,
//! `reject-if-flag` rejects while the plugin's state key `flag` is set, and
//! `fail_times=<n>` asks for a retry while the attempt is at most `<n>`.

use streamhost_sdk::{HandlerError, Message, Source, effects, handler};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let data = msg.field("data").unwrap_or_default().to_vec();
    let source = match msg.source() {
        Source::Stream { name, id } => format!("stream name={name} entry={id}"),
        Source::Pubsub { channel, pattern } => format!(
            "pubsub channel={} pattern={}",
            hex(channel),
            pattern.unwrap_or("-")
        ),
        Source::List { key } => format!("list key={key}"),
        Source::SortedSet { key, score } => format!("sorted-set key={key} score={score}"),
    };
    streamhost_sdk::info!(
        "source-probe id={} attempt={} {source} data={}",
        msg.id(),
        msg.attempt(),
        hex(&data)
    );
    let text = String::from_utf8_lossy(&data).into_owned();
    let word = |name: &str| {
        text.split_whitespace()
            .find_map(|w| match w.split_once('=') {
                Some((k, v)) if k == name => Some(v.to_owned()),
                None if w == name => Some(String::new()),
                _ => None,
            })
    };
    if let Some(key) = word("push") {
        effects::push(&key, &data)?;
    }
    if let Some(key) = word("zadd") {
        let score: f64 = word("score")
            .map_or(Ok(0.0), |s| s.parse())
            .map_err(|_| HandlerError::reject("source-probe: score is not a number"))?;
        effects::zadd(&key, &data, score)?;
    }
    if word("reject").is_some() {
        return Err(HandlerError::reject("source-probe: asked to reject"));
    }
    if word("reject-if-flag").is_some() && effects::kv::get("flag")?.is_some() {
        return Err(HandlerError::reject("source-probe: the flag is set"));
    }
    let fail_times: u32 = word("fail_times").and_then(|n| n.parse().ok()).unwrap_or(0);
    if msg.attempt() <= fail_times {
        return Err(HandlerError::retry(format!(
            "source-probe: attempt {} of fail_times {fail_times}",
            msg.attempt()
        )));
    }
    Ok(())
}

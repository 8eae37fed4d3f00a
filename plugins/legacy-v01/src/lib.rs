//! A handler built against the frozen `streamhost:plugin@0.1.0` WIT
//! (`wit/plugin.wit`) with `wit-bindgen` alone, as a component built before
//! 0.2.0 was: the host must keep running it. Logs `legacy-v01 <stream> <id>
//! attempt <n> data <data>` for every message, emits `from` = its id to the
//! stream named by field `emit` if there is one, and rejects a message with
//! a field `reject`.

wit_bindgen::generate!({
    world: "handler",
    path: "../../wit/plugin.wit",
});

use streamhost::plugin::effects;
use streamhost::plugin::log::{Level, log};
use streamhost::plugin::types::Field;

struct Legacy;

impl Guest for Legacy {
    fn handle(msg: Message) -> Result<(), HandlerError> {
        let field = |name: &str| msg.fields.iter().find(|f| f.name == name);
        let data = field("data").map(|f| String::from_utf8_lossy(&f.value).into_owned());
        log(
            Level::Info,
            &format!(
                "legacy-v01 {} {} attempt {} data {}",
                msg.stream,
                msg.id,
                msg.attempt,
                data.unwrap_or_default()
            ),
        );
        if field("reject").is_some() {
            return Err(HandlerError::Reject("legacy-v01: asked to reject".into()));
        }
        if let Some(target) = field("emit") {
            let target = String::from_utf8_lossy(&target.value).into_owned();
            let from = Field {
                name: "from".into(),
                value: msg.id.clone().into_bytes(),
            };
            effects::emit(&target, &[from], None)
                .map_err(|e| HandlerError::Reject(format!("{e:?}")))?;
        }
        Ok(())
    }
}

export!(Legacy);

//! An effect called natively outside the test harness is a mistake in the
//! test; the panic must point at the handler's line, not into the SDK.
//! (Its own test binary: it installs a process-wide panic hook.)

use std::panic::{self, Location};
use std::sync::Mutex;

use streamhost_sdk::{HandlerError, Message, effects};

static SEEN: Mutex<Option<(String, u32, String)>> = Mutex::new(None);

fn handle(_msg: Message) -> Result<(), HandlerError> {
    effects::kv::set("k", "v")?; // LINE_OF_THE_CALL
    Ok(())
}

#[test]
fn an_effect_outside_the_harness_panics_at_the_callers_line() {
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(Location::to_string).unwrap_or_default();
        let (file, line) = info
            .location()
            .map(|l| (l.file().to_owned(), l.line()))
            .unwrap_or_default();
        let text = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        eprintln!("panicked at {at}: {text}");
        *SEEN.lock().unwrap() = Some((file, line, text));
    }));
    let outcome = panic::catch_unwind(|| handle(Message::new("s", "0-1")));
    let _ = panic::take_hook();
    assert!(outcome.is_err(), "the effect panicked");
    let (file, line, text) = SEEN.lock().unwrap().take().expect("the hook saw the panic");
    let source = include_str!("misuse.rs");
    let expected = source
        .lines()
        .position(|l| l.contains("LINE_OF_THE_CALL") && l.contains("kv::set"))
        .unwrap()
        + 1;
    assert_eq!((file.as_str(), line as usize), (file!(), expected));
    assert!(
        text.contains("`kv::set` called natively outside a test harness"),
        "{text}"
    );
    assert!(
        text.contains("Harness::new().invoke(handle, msg)"),
        "{text}"
    );
}

//! Logging into the host's log, attributed there to the plugin and the entry.
//!
//! Use the functions here with a ready string, or the crate-root macros
//! ([`info!`](crate::info) and friends) with `format!` arguments.

use crate::bindings::streamhost::plugin::log::Level;

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    emit(Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    emit(Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    emit(Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    emit(Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    emit(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str) {
    crate::bindings::streamhost::plugin::log::log(level, message);
}

/// Natively there is no host to import from: the test harness records the
/// line (see `testing`); outside one it is printed.
#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str) {
    if !crate::native::log(level, message) {
        eprintln!("[{level:?}] {message}");
    }
}

/// Logs a `format!`-style message at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Logs a `format!`-style message at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}

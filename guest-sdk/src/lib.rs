//! Write streamhost message handlers in Rust.
//!
//! A handler is one plain function marked `#[handler]`; the crate turns it
//! into a Wasm component implementing the `streamhost:plugin` `handler` world.
//! Build it for `wasm32-wasip2` as a `cdylib`.
//!
//! ```
//! use streamhost_sdk::{handler, HandlerError, Message};
//!
//! #[handler]
//! fn handle(msg: Message) -> Result<(), HandlerError> {
//!     let amount: i64 = msg.field_parse("amount")?; // a bad field rejects the entry
//!     if amount > 1_000_000 {
//!         return Err(HandlerError::retry("needs manual approval, try later"));
//!     }
//!     streamhost_sdk::info!("entry {} on attempt {}: amount {amount}", msg.id(), msg.attempt());
//!     Ok(())
//! }
//! # fn main() {}
//! ```
//!
//! Returning `Ok(())` acks the entry, [`HandlerError::retry`] delivers it
//! again after the plugin's backoff, [`HandlerError::reject`] dead-letters it.

pub mod effects;
mod error;
pub mod log;
mod message;

pub use effects::EffectError;
pub use error::{FieldError, HandlerError};
pub use message::{Message, Source};
pub use streamhost_sdk_macros::handler;

/// The `#[handler]` expansion and the bindings name `wit_bindgen` by this path,
/// so plugin crates need no direct dependency on it.
#[doc(hidden)]
pub use wit_bindgen;

/// Bindings for the `handler` world, generated once here and shared by every plugin.
#[doc(hidden)]
// The generated lowering of `message` (its `source` variant) takes many arguments.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        // `streamhost:plugin@0.2.0`; the frozen 0.1.0 is `../wit/plugin.wit`.
        path: "../wit/v0.2",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        // `$crate` so the macro finds these bindings from the plugin's crate.
        default_bindings_module: "$crate::bindings",
    });
}

/// What the `#[handler]` expansion calls; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::Guest;
    pub use crate::bindings::streamhost::plugin::types::{
        HandlerError as WitHandlerError, Message as WitMessage,
    };

    use crate::{HandlerError, Message};

    /// Runs the user's handler on one entry, converting to and from the WIT types.
    #[inline]
    pub fn run(
        msg: WitMessage,
        handler: fn(Message) -> Result<(), HandlerError>,
    ) -> Result<(), WitHandlerError> {
        handler(Message::from(msg)).map_err(WitHandlerError::from)
    }
}

/// `#[handler]` rejects what cannot be a handler at compile time.
///
/// A wrong signature:
/// ```compile_fail
/// #[streamhost_sdk::handler]
/// fn handle(msg: &streamhost_sdk::Message) -> Result<(), String> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// An async function:
/// ```compile_fail
/// #[streamhost_sdk::handler]
/// async fn handle(msg: streamhost_sdk::Message) -> Result<(), streamhost_sdk::HandlerError> {
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// Not a function:
/// ```compile_fail
/// #[streamhost_sdk::handler]
/// struct Handler;
/// # fn main() {}
/// ```
#[cfg(doctest)]
mod handler_compile_errors {}

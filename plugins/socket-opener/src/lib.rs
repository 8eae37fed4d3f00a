//! Tries to open a TCP connection, so the component imports `wasi:sockets`
//! (which the host must refuse to load).

use std::net::TcpStream;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(_msg: Message) -> Result<(), HandlerError> {
    match TcpStream::connect("127.0.0.1:6379") {
        Ok(_) => Err(HandlerError::reject("escaped: connected to 127.0.0.1:6379")),
        Err(e) => {
            streamhost_sdk::info!("socket-opener: connect refused: {e}");
            Ok(())
        }
    }
}

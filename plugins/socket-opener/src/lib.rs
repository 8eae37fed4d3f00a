//! Tries every socket operation `wasi:sockets` offers: a TCP connect to the
//! address in the entry's `addr` field, a TCP listen, a UDP bind and send, and
//! name lookups. The host links `wasi:sockets` with every operation denied, so
//! each must fail; the plugin rejects with `escaped: ...` if any succeeded,
//! and prints its findings (guest stdout goes to the plugin's log).

use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use streamhost_sdk::{HandlerError, Message, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let addr = msg.field_str("addr").unwrap_or("127.0.0.1:6379").to_owned();
    let mut escaped = Vec::new();
    for (what, outcome) in probes(&addr) {
        match outcome {
            Ok(seen) => escaped.push(format!("{what} ({seen})")),
            Err(why) => println!("socket-opener: {what}: refused: {why}"),
        }
    }
    if escaped.is_empty() {
        Ok(())
    } else {
        Err(HandlerError::reject(format!(
            "escaped: {}",
            escaped.join(", ")
        )))
    }
}

fn probes(addr: &str) -> Vec<(&'static str, Result<String, String>)> {
    let shown = |r: std::io::Result<String>| r.map_err(|e| e.to_string());
    vec![
        (
            "tcp connect",
            shown(
                addr.parse()
                    .map_err(std::io::Error::other)
                    .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_millis(200)))
                    .map(|s| format!("connected to {:?}", s.peer_addr())),
            ),
        ),
        (
            "tcp connect by name",
            shown(TcpStream::connect(("localhost", 6379)).map(|_| "connected".to_owned())),
        ),
        (
            "tcp listen",
            shown(TcpListener::bind("127.0.0.1:0").map(|l| format!("{:?}", l.local_addr()))),
        ),
        (
            "udp bind and send",
            shown(UdpSocket::bind("127.0.0.1:0").and_then(|s| {
                s.send_to(b"escaped", addr)
                    .map(|n| format!("sent {n} bytes"))
            })),
        ),
        (
            "name lookup",
            shown(
                ("example.com", 80)
                    .to_socket_addrs()
                    .map(|a| format!("{:?}", a.collect::<Vec<_>>())),
            ),
        ),
    ]
}

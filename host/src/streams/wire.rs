//! The reader's own Redis connection: a minimal RESP2 client that sends
//! `XREADGROUP` and parses the reply bytes straight into [`Entry`] values.
//!
//! Why not redis-rs here: its generic reply tree (a `Value` per id, field name
//! and value, built by a combinator parser) cost more host CPU per entry than
//! running the Wasm handler (see BENCHMARKS.md). Every other command still
//! goes through redis-rs; this connection only ever carries reads.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::entry::{Entry, ReplyError};
use super::resp;

/// Bytes read from the socket at a time (a batch of 256 entries of ~150
/// bytes is ~50 KiB).
const READ_CHUNK: usize = 64 * 1024;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("Redis replied: {0}")]
    Server(String),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error("{0}")]
    Url(#[from] redis::RedisError),
    #[error("the reader supports redis:// and unix:// URLs, not {0}")]
    Unsupported(String),
}

impl WireError {
    /// Whether Redis said the consumer group (or its stream) is gone.
    pub(crate) fn is_nogroup(&self) -> bool {
        matches!(self, WireError::Server(m) if m.starts_with("NOGROUP"))
    }

    /// Whether Redis sent the read elsewhere (a cluster slot moved or is
    /// failing over): the reader must find the key's node again.
    pub(crate) fn is_redirect(&self) -> bool {
        matches!(self, WireError::Server(m) if crate::connection::is_redirect(m))
    }

    /// Whether Redis did not answer (or is still loading its data), rather
    /// than answering with an error.
    pub(crate) fn is_unreachable(&self) -> bool {
        match self {
            WireError::Io(_) | WireError::Timeout(_) => true,
            WireError::Server(m) => m.starts_with("LOADING"),
            WireError::Url(e) => crate::redis_health::is_unreachable(e),
            WireError::Reply(_) | WireError::Unsupported(_) => false,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection, one request at a time. After any error or an abandoned
/// request it is unusable (a late reply could be taken for the next one):
/// drop it and connect again.
pub(crate) struct WireConnection {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    broken: bool,
}

impl WireConnection {
    /// Connects, authenticates and selects the database the URL names.
    pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<WireConnection, WireError> {
        let client = redis::Client::open(url)?;
        let info = client.get_connection_info();
        let io: Box<dyn Io> = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                let stream = within(timeout, TcpStream::connect((host.as_str(), *port))).await??;
                stream.set_nodelay(true)?;
                Box::new(stream)
            }
            redis::ConnectionAddr::Unix(path) => {
                Box::new(within(timeout, UnixStream::connect(path)).await??)
            }
            other => return Err(WireError::Unsupported(format!("{other:?}"))),
        };
        let mut conn = WireConnection {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
            broken: false,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            conn.simple(auth.arg(password), timeout).await?;
        }
        if settings.db() != 0 {
            conn.simple(redis::cmd("SELECT").arg(settings.db()), timeout)
                .await?;
        }
        Ok(conn)
    }

    /// Whether an earlier request failed or was abandoned.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends an `XREADGROUP` (one stream) and parses its reply; every entry
    /// gets `attempt`.
    pub(crate) async fn read_entries(
        &mut self,
        cmd: &redis::Cmd,
        timeout: Duration,
        attempt: u32,
    ) -> Result<Vec<Entry>, WireError> {
        let len = self.request(cmd, timeout).await?;
        let parsed = resp::parse_read_reply_bytes(&self.buf[..len], attempt);
        self.buf.drain(..len);
        match parsed {
            Ok(Ok(entries)) => Ok(entries),
            Ok(Err(server)) => Err(WireError::Server(server)),
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// Sends a command whose reply is a status (`+OK`) or an error.
    async fn simple(&mut self, cmd: &redis::Cmd, timeout: Duration) -> Result<(), WireError> {
        let len = self.request(cmd, timeout).await?;
        let reply = String::from_utf8_lossy(&self.buf[1..len.saturating_sub(2)]).into_owned();
        let error = self.buf[0] == b'-';
        self.buf.drain(..len);
        if error {
            return Err(WireError::Server(reply));
        }
        Ok(())
    }

    /// Writes `cmd` and reads until one whole reply is buffered; returns its length.
    async fn request(&mut self, cmd: &redis::Cmd, timeout: Duration) -> Result<usize, WireError> {
        if self.broken {
            return Err(WireError::Io(std::io::ErrorKind::NotConnected.into()));
        }
        // Cleared only when the whole reply is in: an error, a timeout or a
        // dropped future leaves the connection marked unusable.
        self.broken = true;
        let len = within(timeout, self.exchange(cmd)).await??;
        self.broken = false;
        Ok(len)
    }

    async fn exchange(&mut self, cmd: &redis::Cmd) -> Result<usize, WireError> {
        self.io.write_all(&cmd.get_packed_command()).await?;
        loop {
            if let Some(len) = resp::complete_reply_len(&self.buf)? {
                return Ok(len);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

async fn within<F: Future>(timeout: Duration, f: F) -> Result<F::Output, WireError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| WireError::Timeout(timeout))
}

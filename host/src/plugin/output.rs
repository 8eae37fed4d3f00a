//! A guest's stdout or stderr: a bounded in-memory buffer that always accepts
//! writes (so `print()` never traps or blocks), drained into the plugin's log
//! after every invocation (see `HostState::flush_output`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes kept per stream per invocation; the log budget is far smaller, so
/// more would only be dropped later.
const CAPACITY: usize = 64 * 1024;

/// One output stream of one store. Clones share the buffer.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Shared>);

#[derive(Default)]
struct Shared {
    /// Set (under the lock) by every write, cleared (under the lock) by
    /// `take`: most invocations write nothing, and `take` runs twice per
    /// invocation, so it skips the lock while nothing was written.
    written: AtomicBool,
    buffer: Mutex<Buffer>,
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    /// An empty stream.
    pub fn new() -> GuestOutput {
        GuestOutput::default()
    }

    /// What was written since the last call, and how many bytes did not fit.
    pub fn take(&self) -> (Vec<u8>, usize) {
        if !self.0.written.load(Ordering::Acquire) {
            return (Vec::new(), 0);
        }
        let mut buffer = self.lock();
        self.0.written.store(false, Ordering::Release);
        let dropped = std::mem::take(&mut buffer.dropped);
        (std::mem::take(&mut buffer.bytes), dropped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // A panic while holding the lock cannot leave the buffer inconsistent.
        self.0
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let room = CAPACITY.saturating_sub(buffer.bytes.len());
        let kept = bytes.len().min(room);
        buffer.bytes.extend_from_slice(&bytes[..kept]);
        buffer.dropped += bytes.len() - kept;
        self.0.written.store(true, Ordering::Release);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_bounded_and_counts_what_it_dropped() {
        let out = GuestOutput::new();
        out.write(&vec![b'x'; CAPACITY - 1]);
        out.write(b"abc");
        let (bytes, dropped) = out.take();
        assert_eq!(bytes.len(), CAPACITY);
        assert_eq!(dropped, 2);
        assert_eq!(out.take(), (Vec::new(), 0));
        out.write(b"again");
        assert_eq!(out.take(), (b"again".to_vec(), 0));
    }
}

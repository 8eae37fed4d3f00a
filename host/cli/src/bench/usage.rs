//! Resource usage of one run: this process's CPU time (`getrusage`), its peak
//! RSS, and the Redis server's CPU time (`INFO cpu`).

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

/// Snapshot taken when a run starts.
pub struct Meter {
    started: Instant,
    cpu: Duration,
    redis_cpu: Option<f64>,
}

/// What a run used.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall-clock time.
    pub elapsed: Duration,
    /// User + system CPU time of this process.
    pub cpu: Duration,
    /// User + system CPU seconds of the Redis server, when it reports them.
    pub redis_cpu: Option<f64>,
    /// Peak resident set size during the run, in bytes (since process start
    /// where the kernel cannot reset the high-water mark).
    pub peak_rss: u64,
}

impl Meter {
    /// Resets the RSS high-water mark and starts counting.
    pub async fn start(conn: &mut MultiplexedConnection) -> Meter {
        Meter::start_all(std::slice::from_mut(conn)).await
    }

    /// [`Meter::start`] with the Redis CPU of every server in `conns`
    /// summed (a cluster's nodes).
    pub async fn start_all(conns: &mut [MultiplexedConnection]) -> Meter {
        reset_peak_rss();
        let redis_cpu = redis_cpu_total(conns).await;
        Meter {
            started: Instant::now(),
            cpu: process_cpu(),
            redis_cpu,
        }
    }

    /// The wall time so far (the end of a run is when its last entry is acked,
    /// not when the host has shut down).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Usage from the start up to `elapsed` (wall) and now (CPU, RSS).
    pub async fn finish(self, conn: &mut MultiplexedConnection, elapsed: Duration) -> Usage {
        self.finish_all(std::slice::from_mut(conn), elapsed).await
    }

    /// [`Meter::finish`] of a meter started with [`Meter::start_all`] on the
    /// same servers.
    pub async fn finish_all(self, conns: &mut [MultiplexedConnection], elapsed: Duration) -> Usage {
        let cpu = process_cpu().saturating_sub(self.cpu);
        let redis_cpu = match (self.redis_cpu, redis_cpu_total(conns).await) {
            (Some(before), Some(after)) => Some((after - before).max(0.0)),
            _ => None,
        };
        Usage {
            elapsed,
            cpu,
            redis_cpu,
            peak_rss: peak_rss(),
        }
    }
}

/// User + system CPU time of this process so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass, which is
    // zero-initialised plain data of the right type.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
}

/// Linux lets a process reset its RSS high-water mark (`VmHWM`), so each run
/// reports its own peak; elsewhere this does nothing and peaks accumulate.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS in bytes: `VmHWM` on Linux, else `ru_maxrss`.
pub fn peak_rss() -> u64 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        return kib * 1024;
    }
    // SAFETY: as in `process_cpu`.
    let maxrss = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage.ru_maxrss
    };
    // Kilobytes on Linux and the BSDs, bytes on macOS.
    let unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    u64::try_from(maxrss).unwrap_or(0) * unit
}

/// Resident set size now, in bytes (`VmRSS`; 0 where unknown).
pub fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The CPU seconds of every server in `conns`, if each reports them.
async fn redis_cpu_total(conns: &mut [MultiplexedConnection]) -> Option<f64> {
    let mut total = 0.0;
    for conn in conns {
        total += redis_cpu_seconds(conn).await?;
    }
    Some(total)
}

/// `used_cpu_user + used_cpu_sys` from `INFO cpu`, if the server reports them.
pub async fn redis_cpu_seconds(conn: &mut MultiplexedConnection) -> Option<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.ok()?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some(field("used_cpu_user")? + field("used_cpu_sys")?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_and_rss_are_measured() {
        let before = super::process_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::process_cpu() > before);
        assert!(super::peak_rss() > 1 << 20);
        assert!(super::current_rss() > 1 << 20);
        assert!(super::current_rss() <= super::peak_rss());
    }
}

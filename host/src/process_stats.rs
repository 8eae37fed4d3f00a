//! `process_*` metrics read from `/proc/self` at scrape time (resident and
//! virtual memory, CPU seconds, open file descriptors, threads, start time),
//! named as every Prometheus exporter names them. On systems without `/proc`
//! the series are absent, not zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Registers nothing up front; reads `/proc/self` on every scrape.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// What one look at `/proc/self` found.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    /// Resident set size.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size.
    pub virtual_bytes: Option<u64>,
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current process's figures.
    pub(crate) fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let mut stats = parse_stat(&stat, clock_ticks(), page_size(), boot_time());
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        stats
    }
}

/// Parses `/proc/<pid>/stat`: fields after the `)` that ends the command name
/// (which may itself contain spaces and parentheses).
pub(crate) fn parse_stat(stat: &str, ticks: f64, page: u64, boot_s: Option<f64>) -> ProcessStats {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return ProcessStats::default();
    };
    // rest starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu = match (num(14), num(15)) {
        (Some(u), Some(s)) if ticks > 0.0 => Some((u + s) as f64 / ticks),
        _ => None,
    };
    let start = match (num(22), boot_s) {
        (Some(t), Some(boot)) if ticks > 0.0 => Some(boot + t as f64 / ticks),
        _ => None,
    };
    ProcessStats {
        resident_bytes: num(24).map(|p| p * page),
        virtual_bytes: num(23),
        cpu_seconds: cpu,
        open_fds: None,
        threads: num(20),
        start_time_seconds: start,
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096)
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                s.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                s.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_threads",
                "OS threads",
                None,
                s.threads.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                s.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let metric =
                    encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        if let Some(cpu) = s.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name_parses() {
        // pid (comm) state ppid ... utime(14) stime(15) ... threads(20) ... starttime(22) vsize(23) rss(24)
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1000 123456789 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096, Some(1_700_000_000.0));
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.virtual_bytes, Some(123_456_789));
        assert_eq!(s.resident_bytes, Some(300 * 4096));
        assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(
            parse_stat("garbage", 100.0, 4096, None),
            ProcessStats::default()
        );
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let s = ProcessStats::read();
        assert!(s.resident_bytes.unwrap_or(0) > 0, "{s:?}");
        assert!(s.open_fds.unwrap_or(0) > 0, "{s:?}");
        assert!(s.cpu_seconds.is_some(), "{s:?}");
    }
}

//! The benchmark's figures: per-run rows, the machine they ran on, the goals
//! of issue 6 checked against them, printed as a table or written as JSON.

use std::fmt;

use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::BenchOptions;
use super::guests::{GuestLang, GuestRun};
use super::usage::Usage;

/// Everything one `streamhost bench` invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it ran (UTC, RFC 3339).
    pub date: String,
    /// The command line.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// Entries pre-filled for the wasm and native runs.
    pub entries: u64,
    /// Size of one entry's `data` field, in bytes (entry 0).
    pub entry_bytes: usize,
    /// One row per run, in the order they ran.
    pub runs: Vec<Run>,
    /// One row per `--guest` language, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<GuestRun>,
    /// The throughput goals, checked.
    pub goals: Vec<Goal>,
}

/// The machine and server the figures come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to this process.
    pub nproc: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `redis_version` from `INFO server`.
    pub redis_version: String,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `wasm`, `native`, `hand-written`, `per-message` or `latency`.
    pub name: String,
    /// What ran, in words.
    pub description: String,
    /// Entries handled and acked.
    pub entries: u64,
    /// Wall-clock seconds from the start of consumption to the last ack (for
    /// the latency run: the produce window).
    pub seconds: f64,
    /// `entries / seconds`.
    pub entries_per_sec: f64,
    /// Throughput relative to the `native` run.
    pub vs_native: Option<f64>,
    /// Throughput relative to the `hand-written` run.
    pub vs_hand_written: Option<f64>,
    /// Produce-to-handled latency (latency runs only).
    pub latency_ms: Option<Latency>,
    /// Entries per second offered (latency runs only; one row per rate).
    pub offered_per_sec: Option<u64>,
    /// CPU seconds (user + system) of this process per million entries.
    pub host_cpu_s_per_million: f64,
    /// CPU seconds of the Redis server per million entries.
    pub redis_cpu_s_per_million: Option<f64>,
    /// Peak RSS of this process during the run, in MiB.
    pub peak_rss_mib: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// How many entries were measured.
    pub samples: usize,
}

impl Latency {
    /// Nearest-rank percentiles of samples in microseconds; `None` when there are none.
    pub fn from_micros(mut samples: Vec<u64>) -> Option<Latency> {
        samples.sort_unstable();
        let last = samples.len().checked_sub(1)?;
        let n = samples.len() as f64;
        let at = |q: f64| {
            let rank = ((q * n).ceil() as usize).saturating_sub(1).min(last);
            samples[rank] as f64 / 1000.0
        };
        Some(Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
            samples: samples.len(),
        })
    }
}

/// One goal of the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Run {
    /// A row from a run's usage.
    pub fn new(name: &str, description: String, entries: u64, usage: &Usage) -> Run {
        let seconds = usage.elapsed.as_secs_f64().max(1e-9);
        let millions = (entries as f64 / 1e6).max(1e-12);
        Run {
            name: name.to_owned(),
            description,
            entries,
            seconds,
            entries_per_sec: entries as f64 / seconds,
            vs_native: None,
            vs_hand_written: None,
            latency_ms: None,
            offered_per_sec: None,
            host_cpu_s_per_million: usage.cpu.as_secs_f64() / millions,
            redis_cpu_s_per_million: usage.redis_cpu.map(|s| s / millions),
            peak_rss_mib: usage.peak_rss as f64 / (1 << 20) as f64,
        }
    }
}

impl Report {
    /// An empty report with the machine's description.
    pub async fn new(
        options: &BenchOptions,
        conn: &mut MultiplexedConnection,
    ) -> streamhost::Result<Report> {
        let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
        let redis_version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        Ok(Report {
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command: options.command.clone(),
            machine: Machine {
                nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
                cpu_model: cpu_model(),
                redis_version,
            },
            entries: options.entries,
            entry_bytes: super::workload::order_json(0).len(),
            runs: Vec::new(),
            guests: Vec::new(),
            goals: Vec::new(),
        })
    }

    /// Adds a run's row.
    pub fn push(&mut self, run: Run) {
        self.runs.push(run);
    }

    /// The row of a run by name (the first, for `latency`).
    pub fn run(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// The label a row is printed with: the latency rows name their rate.
    fn label(run: &Run) -> String {
        match run.offered_per_sec {
            Some(rate) => format!("{} {}k/s", run.name, rate as f64 / 1000.0),
            None => run.name.clone(),
        }
    }

    /// Fills in the ratios and checks the goals.
    pub fn finish(&mut self) {
        let rate = |name: &str| self.run(name).map(|r| r.entries_per_sec);
        let (native, hand) = (rate("native"), rate("hand-written"));
        for run in &mut self.runs {
            if run.name == "latency" {
                continue; // Paced, not a throughput figure.
            }
            run.vs_native = native.map(|n| run.entries_per_sec / n);
            run.vs_hand_written = hand.map(|h| run.entries_per_sec / h);
        }
        let rust = self
            .guests
            .iter()
            .find(|g| g.lang == GuestLang::Rust)
            .map(|g| g.run.entries_per_sec);
        for guest in &mut self.guests {
            guest.vs_rust = rust.map(|r| guest.run.entries_per_sec / r);
        }
        self.goals = self.check_goals();
    }

    fn check_goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        let mut goal = |goal: &str, measured: String, met: bool| {
            goals.push(Goal {
                goal: goal.to_owned(),
                measured,
                met,
            })
        };
        if let Some(w) = self.run("wasm") {
            let r = w.entries_per_sec;
            goal(
                "wasm ≥ 300,000 entries/s",
                format!("{r:.0}/s"),
                r >= 300_000.0,
            );
            if let Some(x) = w.vs_native {
                goal("wasm ≥ 0.85× native", format!("{x:.2}×"), x >= 0.85);
            }
            let cpu = w.host_cpu_s_per_million;
            goal(
                "wasm host CPU ≤ 1.2 µs/entry",
                format!("{cpu:.2} µs"),
                cpu <= 1.2,
            );
            if let Some(x) = w.vs_hand_written {
                goal("wasm ≥ 20× hand-written", format!("{x:.1}×"), x >= 20.0);
            }
        }
        for run in self.runs.iter().filter(|r| r.name == "latency") {
            let Some(l) = run.latency_ms else { continue };
            let at = Self::label(run).replacen("latency ", " at ", 1);
            goal(
                &format!("latency p50 ≤ 0.5 ms{at}"),
                format!("{:.3} ms", l.p50),
                l.p50 <= 0.5,
            );
            goal(
                &format!("latency p99 ≤ 1 ms{at}"),
                format!("{:.3} ms", l.p99),
                l.p99 <= 1.0,
            );
        }
        if let Some(p) = self.run("per-message") {
            let r = p.entries_per_sec;
            goal(
                "per-message ≥ 50,000 entries/s",
                format!("{r:.0}/s"),
                r >= 50_000.0,
            );
        }
        for g in &self.guests {
            let ratio = match g.lang {
                GuestLang::Rust => None,
                GuestLang::Python => Some(0.4),
                GuestLang::Js => Some(0.3),
            };
            if let (Some(min), Some(x)) = (ratio, g.vs_rust) {
                goal(
                    &format!("{} ≥ {min}× Rust entries/s", g.lang.name()),
                    format!("{x:.2}×"),
                    x >= min,
                );
            }
            let ms = g.cached_start_s * 1000.0;
            goal(
                &format!("{} cached start ≤ 200 ms", g.lang.name()),
                format!("{ms:.0} ms"),
                ms <= 200.0,
            );
        }
        goals
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|v| v.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "{} · {} CPUs ({}) · redis {} · {} entries of {} bytes",
            self.date, m.nproc, m.cpu_model, m.redis_version, self.entries, self.entry_bytes
        )?;
        writeln!(
            f,
            "{:<18} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>8}",
            "run",
            "entries",
            "entries/s",
            "÷native",
            "÷hand",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "CPU s/M",
            "redis s/M",
            "RSS MiB"
        )?;
        for r in &self.runs {
            let ratio = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}"));
            let ms = |pick: fn(&Latency) -> f64| {
                r.latency_ms
                    .as_ref()
                    .map_or("-".to_owned(), |l| format!("{:.3}", pick(l)))
            };
            writeln!(
                f,
                "{:<18} {:>9} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.2} {:>10} {:>8.1}",
                Self::label(r),
                r.entries,
                r.entries_per_sec,
                ratio(r.vs_native),
                ratio(r.vs_hand_written),
                ms(|l| l.p50),
                ms(|l| l.p99),
                ms(|l| l.p999),
                r.host_cpu_s_per_million,
                r.redis_cpu_s_per_million
                    .map_or("-".to_owned(), |s| format!("{s:.2}")),
                r.peak_rss_mib
            )?;
        }
        if !self.guests.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<7} {:>9} {:>11} {:>6} {:>9} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                "guest",
                "entries",
                "entries/s",
                "÷rust",
                "CPU s/M",
                "fuel/entry",
                "size MiB",
                "inst MiB",
                "RSS MiB",
                "build s",
                "cold s",
                "cached ms"
            )?;
            for g in &self.guests {
                let r = &g.run;
                writeln!(
                    f,
                    "{:<7} {:>9} {:>11.0} {:>6} {:>9.2} {:>10.0} {:>9.2} {:>9.1} {:>8.1} {:>8} {:>9.2} {:>9.0}",
                    g.lang.name(),
                    r.entries,
                    r.entries_per_sec,
                    g.vs_rust.map_or("-".to_owned(), |x| format!("{x:.2}")),
                    r.host_cpu_s_per_million,
                    g.fuel_per_entry,
                    g.component_mib,
                    g.instance_mib,
                    g.host_rss_mib,
                    g.build_s.map_or("cached".to_owned(), |s| format!("{s:.1}")),
                    g.cold_start_s,
                    g.cached_start_s * 1000.0
                )?;
            }
            let concurrency = self.guests.first().map_or(0, |g| g.concurrency);
            writeln!(
                f,
                "(RSS: peak of the run minus RSS before loading, {concurrency} instances; \
                 cold/cached: load + instantiate + first order, empty/warm compile cache)"
            )?;
        }
        writeln!(f)?;
        for g in &self.goals {
            let mark = if g.met { "met    " } else { "NOT MET" };
            writeln!(f, "{mark}  {:<40} {}", g.goal, g.measured)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Latency;

    #[test]
    fn percentiles_of_samples() {
        let l = Latency::from_micros((1..=1000).rev().collect()).unwrap();
        assert_eq!((l.p50, l.p99, l.max, l.samples), (0.5, 0.99, 1.0, 1000));
        assert!(Latency::from_micros(Vec::new()).is_none());
    }
}

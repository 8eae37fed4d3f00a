//! A weighted share of the host's CPU between the plugins of one host
//! (`cpu_weight`). Each plugin has a budget of thread time that fills at its
//! share of the runtime's threads — `threads × weight ÷ the weights of the
//! plugins that want to run` — and spends the time its tasks (workers with
//! their guest calls, reader, acker) are being polled. A plugin wants to run
//! when it asked for a turn or was charged within [`ACTIVE_FOR`]. A plugin in
//! debt waits before its next entry until its budget is back to zero; a
//! plugin alone never waits, so one busy plugin uses the whole host. A plugin
//! that wanted to run recently keeps its share reserved for [`ACTIVE_FOR`]
//! even if it uses less. Calls are never cut short: a long call is paid for
//! by the plugin's next turns (a debt of at most [`MAX_DEBT`] of waiting),
//! and waiting never counts against `limits.timeout_ms`. The reader is held
//! back through the work queue the waiting workers stop draining.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a plugin counts as wanting to run after it last asked.
const ACTIVE_FOR: Duration = Duration::from_millis(100);

/// Unused budget a plugin may save up, per thread: a quiet plugin gets a
/// short burst, not a head start of seconds.
const BURST_PER_THREAD: Duration = Duration::from_millis(10);

/// The longest single wait; the budget is looked at again after it.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// How long a turn found free lets the plugin's next turns go without
/// looking at the budgets again (taking their lock for every entry of a
/// busy plugin cost more than the share saves).
const FREE_FOR: Duration = Duration::from_millis(1);

/// The longest a debt makes a plugin wait in all, however long the call
/// that ran it up: beside a far heavier weight, latency stays bounded.
const MAX_DEBT: Duration = Duration::from_secs(1);

/// The shares of one host's plugins.
pub(crate) struct CpuShares {
    threads: f64,
    /// When these shares began: charges carry their time as microseconds since.
    origin: Instant,
    plugins: Mutex<Vec<Budget>>,
    /// What every poll adds, without a lock (a busy host polls hundreds of
    /// thousands of times a second); folded into the budgets at each turn.
    meters: Vec<Meter>,
}

#[derive(Default)]
struct Meter {
    /// Nanoseconds charged since the last fold.
    charged_ns: AtomicU64,
    /// When it was last charged, in microseconds since `origin` (0: never).
    charged_at_us: AtomicU64,
    /// When a turn was last found free, in microseconds since `origin`.
    free_at_us: AtomicU64,
}

struct Budget {
    weight: f64,
    /// Seconds of guest run time this plugin may still spend (negative: debt).
    balance: f64,
    refilled: Instant,
    asked: Option<Instant>,
}

/// One plugin's place among a host's shares.
#[derive(Clone)]
pub(crate) struct CpuShare {
    shares: Arc<CpuShares>,
    index: usize,
}

impl CpuShares {
    /// Shares for plugins of `weights` on `threads` threads running guests.
    pub(crate) fn new(threads: usize, weights: &[u32]) -> Arc<CpuShares> {
        let now = Instant::now();
        Arc::new(CpuShares {
            threads: threads.max(1) as f64,
            origin: now,
            meters: weights.iter().map(|_| Meter::default()).collect(),
            plugins: Mutex::new(
                weights
                    .iter()
                    .map(|&w| Budget {
                        weight: f64::from(w.max(1)),
                        balance: 0.0,
                        refilled: now,
                        asked: None,
                    })
                    .collect(),
            ),
        })
    }

    /// The share of the plugin at `index` (in the order of the weights).
    pub(crate) fn share(self: &Arc<Self>, index: usize) -> CpuShare {
        CpuShare {
            shares: self.clone(),
            index,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Budget>> {
        // Every update leaves the budgets consistent before it could panic.
        self.plugins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long plugin `index` must wait before its next call (zero: go),
    /// after counting it as wanting to run.
    fn wait(&self, index: usize, now: Instant) -> Duration {
        let mut plugins = self.lock();
        self.fold(&mut plugins);
        let Some(me) = plugins.get_mut(index) else {
            return Duration::ZERO;
        };
        me.asked = Some(now);
        let active = |b: &Budget| b.asked.is_some_and(|t| now.duration_since(t) < ACTIVE_FOR);
        let weights: f64 = plugins.iter().filter(|b| active(b)).map(|b| b.weight).sum();
        let me = &mut plugins[index];
        if weights <= me.weight {
            // Alone: nobody to share with, and no debt carried into later contention.
            me.balance = me.balance.max(0.0);
            me.refilled = now;
            self.note_free(index, Some(now));
            return Duration::ZERO;
        }
        let rate = self.threads * me.weight / weights;
        let burst = BURST_PER_THREAD.as_secs_f64() * self.threads;
        me.balance = (me.balance + rate * now.duration_since(me.refilled).as_secs_f64())
            .clamp(-rate * MAX_DEBT.as_secs_f64(), burst);
        me.refilled = now;
        // Turns go without looking for a while only on a budget that could
        // pay for every thread running this plugin that long.
        let affords = me.balance >= FREE_FOR.as_secs_f64() * self.threads;
        let balance = me.balance;
        self.note_free(index, affords.then_some(now));
        if balance >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-balance / rate).min(MAX_WAIT)
        }
    }

    /// Microseconds from `origin` to `now` (at least 1: 0 means never).
    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether plugin `index` found its turn free within [`FREE_FOR`].
    fn recently_free(&self, index: usize, now: Instant) -> bool {
        self.meters.get(index).is_some_and(|m| {
            let free = m.free_at_us.load(Ordering::Relaxed);
            free > 0 && self.micros(now).saturating_sub(free) < FREE_FOR.as_micros() as u64
        })
    }

    /// Lets plugin `index`'s turns go without looking from `now` for
    /// [`FREE_FOR`] (none: look at every turn).
    fn note_free(&self, index: usize, now: Option<Instant>) {
        if let Some(m) = self.meters.get(index) {
            m.free_at_us
                .store(now.map_or(0, |now| self.micros(now)), Ordering::Relaxed);
        }
    }

    /// Charges plugin `index`, which counts as wanting to run (a call
    /// longer than [`ACTIVE_FOR`] keeps it so).
    fn charge(&self, index: usize, ran: Duration, now: Instant) {
        if let Some(meter) = self.meters.get(index) {
            let ns = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
            meter.charged_ns.fetch_add(ns, Ordering::Relaxed);
            meter
                .charged_at_us
                .fetch_max(self.micros(now), Ordering::Relaxed);
        }
    }

    /// Moves what the meters gathered into the budgets.
    fn fold(&self, plugins: &mut [Budget]) {
        for (budget, meter) in plugins.iter_mut().zip(&self.meters) {
            let ns = meter.charged_ns.swap(0, Ordering::Relaxed);
            budget.balance -= Duration::from_nanos(ns).as_secs_f64();
            let at = meter.charged_at_us.load(Ordering::Relaxed);
            if at > 0 {
                let charged = self.origin + Duration::from_micros(at);
                budget.asked = budget.asked.max(Some(charged));
            }
        }
    }
}

impl CpuShare {
    /// Waits until this plugin may handle its next entry, calling
    /// `before_waiting` once if it must wait; returns how long it waited.
    pub(crate) async fn wait_turn(&self, before_waiting: impl FnOnce()) -> Duration {
        let mut before_waiting = Some(before_waiting);
        let started = Instant::now();
        if self.shares.recently_free(self.index, started) {
            return Duration::ZERO;
        }
        loop {
            let now = Instant::now();
            let wait = self.shares.wait(self.index, now);
            if wait.is_zero() {
                return if before_waiting.is_some() {
                    Duration::ZERO
                } else {
                    started.elapsed()
                };
            }
            if let Some(f) = before_waiting.take() {
                f();
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges `ran` of thread time to this plugin.
    pub(crate) fn charge(&self, ran: Duration) {
        self.shares.charge(self.index, ran, Instant::now());
    }
}

/// `task` with the time each of its polls takes charged to `share`; as is
/// without one (a host's only plugin reads no clock for it).
pub(crate) async fn charged<F: Future>(share: Option<CpuShare>, task: F) -> F::Output {
    let mut task = std::pin::pin!(task);
    std::future::poll_fn(|cx| match &share {
        None => task.as_mut().poll(cx),
        Some(share) => {
            let polled = Instant::now();
            let poll = task.as_mut().poll(cx);
            share.charge(polled.elapsed());
            poll
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_plugin_alone_never_waits_whatever_it_spent() {
        let shares = CpuShares::new(2, &[100, 100]);
        let t = Instant::now();
        assert_eq!(shares.wait(0, t), Duration::ZERO);
        shares.charge(0, 500 * MS, t);
        assert_eq!(shares.wait(0, t + MS), Duration::ZERO);
    }

    #[test]
    fn a_plugin_in_debt_waits_for_its_weighted_share_while_another_wants_to_run() {
        // Two threads, weights 1:4: the first may run 0.4 of a thread.
        let shares = CpuShares::new(2, &[100, 400]);
        let t = Instant::now();
        assert_eq!(shares.wait(1, t), Duration::ZERO);
        assert_eq!(shares.wait(0, t), Duration::ZERO);
        shares.charge(0, 20 * MS, t);
        // 20 ms of debt at 0.4 threads: 50 ms to earn back.
        let wait = shares.wait(0, t + MS);
        assert!(
            (45 * MS..=50 * MS).contains(&wait),
            "waits {wait:?} for 20 ms of debt at 0.4 of a thread"
        );
        // The heavier plugin is charged as much and waits far less.
        shares.charge(1, 20 * MS, t);
        let wait = shares.wait(1, t + MS);
        assert!(wait <= 13 * MS, "{wait:?}");
        // Once the other stops asking, the debt is forgiven.
        assert_eq!(shares.wait(0, t + ACTIVE_FOR + 2 * MS), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_charged_task_pays_for_its_polls() {
        let shares = CpuShares::new(1, &[100, 100]);
        let t = Instant::now();
        shares.wait(1, t);
        shares.wait(0, t);
        charged(Some(shares.share(0)), async {
            std::thread::sleep(20 * MS);
            tokio::task::yield_now().await;
            std::thread::sleep(20 * MS);
        })
        .await;
        // At least 40 ms of polls at half a thread: 80 ms or more to earn
        // back, waited for in steps of at most MAX_WAIT.
        assert_eq!(shares.wait(0, t), MAX_WAIT);
    }

    #[test]
    fn saved_budget_is_capped_at_a_short_burst() {
        let shares = CpuShares::new(1, &[100, 100]);
        let t = Instant::now();
        shares.wait(1, t);
        shares.wait(0, t);
        // An hour later the other asks again: the first saved at most the burst.
        let later = t + Duration::from_secs(3600);
        shares.wait(1, later);
        assert_eq!(shares.wait(0, later), Duration::ZERO);
        shares.charge(0, BURST_PER_THREAD + 10 * MS, later);
        assert!(shares.wait(0, later) > Duration::ZERO);
    }
}

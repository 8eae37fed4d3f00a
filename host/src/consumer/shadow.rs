//! Runs a shadow's candidate (`deploy --shadow`) on this host: copies of
//! the entries the current version handled, one at a time, in the plugin's
//! sandbox and limits with no Redis (`plugin::Invoker`: effects captured,
//! never committed); compares outcome and effects with the current
//! version's and adds the counts and differing examples to the shadow
//! report in Redis (`release::record_shadow`), in batches.

use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc;

use crate::display::{escape_bytes, escape_str};
use crate::effects::Effect;
use crate::metrics::PluginMetrics;
use crate::outcome::Outcome;
use crate::pipeline::PluginContext;
use crate::pipeline::shadow::{Job, QUEUE};
use crate::plugin::{Invoker, LoadedPlugin};
use crate::release::{self, ShadowExample};

/// How often counts are added to the report.
const FLUSH: Duration = Duration::from_millis(500);
/// Longest text kept of one side of an example.
const EXAMPLE_BYTES: usize = 2048;
/// Examples sent in one flush at most (the report keeps the newest).
const EXAMPLES_PER_FLUSH: usize = release::SHADOW_EXAMPLES;

/// Starts the candidate's runner; returns the queue to feed it. It ends
/// when the queue's senders are dropped (the shadow ended).
pub(crate) fn spawn(ctx: &PluginContext, candidate: LoadedPlugin, conn: Conn) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let runner = Runner {
        plugin: ctx.plugin.name.to_string(),
        host: ctx.consumer.clone(),
        metrics: ctx.metrics.clone(),
        conn,
        compared: 0,
        differ: 0,
        examples: Vec::new(),
    };
    tokio::spawn(runner.run(Invoker::new(candidate), rx));
    tx
}

struct Runner {
    plugin: String,
    host: String,
    metrics: PluginMetrics,
    conn: Conn,
    compared: u64,
    differ: u64,
    examples: Vec<ShadowExample>,
}

impl Runner {
    async fn run(mut self, mut invoker: Invoker, mut rx: mpsc::Receiver<Job>) {
        let mut flush = tokio::time::interval(FLUSH);
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => self.compare(&mut invoker, job).await,
                    None => break,
                },
                _ = flush.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }

    async fn compare(&mut self, invoker: &mut Invoker, job: Job) {
        let (outcome, effects) = match invoker.invoke(&job.msg).await {
            Ok(report) => (Ok(report.outcome), report.effects),
            Err(e) => (Err(e.to_string()), Vec::new()),
        };
        self.compared += 1;
        self.metrics.release.shadow_compared.inc();
        let same = matches!(&outcome, Ok(o) if *o == job.outcome) && effects == job.effects;
        if same {
            return;
        }
        self.differ += 1;
        self.metrics.release.shadow_differ.inc();
        if self.examples.len() < EXAMPLES_PER_FLUSH {
            let candidate = match &outcome {
                Ok(o) => describe(o, &effects),
                Err(e) => format!("cannot instantiate: {}", escape_str(e)),
            };
            self.examples.push(ShadowExample {
                id: job.msg.id.clone(),
                host: self.host.clone(),
                stable: describe(&job.outcome, &job.effects),
                candidate,
            });
        }
    }

    async fn flush(&mut self) {
        if self.compared == 0 && self.examples.is_empty() {
            return;
        }
        let result = release::record_shadow(
            &mut self.conn,
            &self.plugin,
            self.compared,
            self.differ,
            0,
            &self.examples,
        )
        .await;
        match result {
            Ok(()) => {
                self.compared = 0;
                self.differ = 0;
                self.examples.clear();
            }
            Err(e) => {
                // Kept and added next time; examples stay bounded.
                tracing::debug!(plugin = %self.plugin, error = %e, "cannot record the shadow report; will try again");
            }
        }
    }
}

/// Records dropped copies (counted on the stable path) in the report.
pub(crate) async fn report_dropped(ctx: &PluginContext, conn: &mut Conn) {
    let dropped = ctx.shadow.take_dropped();
    if dropped == 0 {
        return;
    }
    ctx.metrics.release.shadow_dropped.inc_by(dropped);
    if let Err(e) = release::record_shadow(conn, &ctx.plugin.name, 0, 0, dropped, &[]).await {
        tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot record dropped shadow copies");
    }
}

/// An outcome and its effects as one escaped, bounded line.
fn describe(outcome: &Outcome, effects: &[Effect]) -> String {
    let mut text = match outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Retry(r) => format!("retry: {}", escape_str(r)),
        Outcome::Reject(r) => format!("reject: {}", escape_str(r)),
        Outcome::Trap(kind, d) => format!("trap ({kind}): {}", escape_str(d)),
    };
    for effect in effects {
        text.push_str("; ");
        text.push_str(&effect_text(effect));
        if text.len() > EXAMPLE_BYTES {
            break;
        }
    }
    if text.len() > EXAMPLE_BYTES {
        let mut end = EXAMPLE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" …");
    }
    text
}

fn effect_text(effect: &Effect) -> String {
    let fields = |fields: &[crate::plugin::Field]| {
        fields
            .iter()
            .map(|f| format!("{}={}", escape_str(&f.name), escape_bytes(&f.value)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match effect {
        Effect::Emit {
            stream, fields: f, ..
        } => {
            format!("emit {} {{{}}}", escape_str(stream), fields(f))
        }
        Effect::Publish { channel, payload } => {
            format!("publish {} {}", escape_str(channel), escape_bytes(payload))
        }
        Effect::Schedule {
            stream,
            fields: f,
            delay_ms,
        } => format!(
            "schedule {} {{{}}} in {delay_ms}ms",
            escape_str(stream),
            fields(f)
        ),
        Effect::Push { key, item } => {
            format!("push {} {}", escape_str(key), escape_bytes(item))
        }
        Effect::Zadd { key, member, score } => {
            format!(
                "zadd {} {} score {score}",
                escape_str(key),
                escape_bytes(member)
            )
        }
        Effect::Set { key, value } => {
            format!("kv-set {} = {}", escape_str(key), escape_bytes(value))
        }
        Effect::Delete { key } => format!("kv-delete {}", escape_str(key)),
    }
}

//! `streamhost dlq replay --with FILE.wasm --dry-run` and `--only-accepted-by
//! FILE.wasm`: the selected dead letters run through a candidate component in
//! the plugin's sandbox with no Redis writes. Guest-controlled text (reasons,
//! trap details) is printed escaped, as `invoke` does.

use std::io::Write;
use std::path::Path;

use streamhost::candidate::{self, Trial, TrialReport, Verdict};
use streamhost::config::PluginConfig;
use streamhost::connection::Conn;
use streamhost::display::{escape_bytes, escape_str};
use streamhost::dlq::{Filter, Selection};

/// Which plugin's limits and allow-list the candidate runs under.
pub struct Candidate<'a> {
    /// The component file.
    pub file: &'a Path,
    /// The plugin's config table, when a config names the plugin.
    pub plugin: Option<PluginConfig>,
}

/// Prints each selected dead letter's verdict and the totals.
pub async fn dry_run(
    conn: &mut Conn,
    stream: &str,
    filter: &Filter,
    selection: &Selection,
    candidate: Candidate<'_>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut invoker = load(&candidate).await?;
    let mut refused: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut failed = None;
    let kind = candidate.plugin.as_ref().map(PluginConfig::source);
    let report =
        candidate::try_dead_letters(conn, stream, filter, selection, &mut invoker, kind, |t| {
            if t.verdict != Verdict::Accepted {
                *refused.entry(t.verdict.word()).or_default() += 1;
            }
            let line = if json { json_line(t) } else { text_line(t) };
            if let Err(e) = writeln!(out, "{line}") {
                failed.get_or_insert(e);
            }
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let file = escape_str(&candidate.file.display().to_string());
    if json {
        let summary = serde_json::json!({
            "summary": true,
            "stream": stream,
            "candidate": file,
            "accepted": report.accepted,
            "refused": report.refused,
            "by_verdict": refused,
        });
        writeln!(out, "{summary}")?;
    } else {
        let breakdown: Vec<String> = refused.iter().map(|(w, n)| format!("{w} {n}")).collect();
        writeln!(
            out,
            "candidate {file}: {} of {} dead letter(s) in {stream} would be accepted; {} still refused{}; nothing was written",
            report.accepted,
            report.accepted + report.refused,
            report.refused,
            if breakdown.is_empty() {
                String::new()
            } else {
                format!(" ({})", breakdown.join(", "))
            }
        )?;
    }
    Ok(())
}

/// The ids of the selected dead letters the candidate accepts (for a real
/// replay of just those), and the totals.
pub async fn accepted(
    conn: &mut Conn,
    stream: &str,
    filter: &Filter,
    selection: &Selection,
    candidate: Candidate<'_>,
) -> anyhow::Result<(Vec<String>, TrialReport)> {
    let mut invoker = load(&candidate).await?;
    let mut ids = Vec::new();
    let kind = candidate.plugin.as_ref().map(PluginConfig::source);
    let report =
        candidate::try_dead_letters(conn, stream, filter, selection, &mut invoker, kind, |t| {
            if t.verdict == Verdict::Accepted {
                ids.push(t.id.clone());
            }
        })
        .await?;
    Ok((ids, report))
}

async fn load(candidate: &Candidate<'_>) -> anyhow::Result<streamhost::plugin::Invoker> {
    let config = match &candidate.plugin {
        Some(p) => {
            let mut p = p.clone();
            p.component = candidate.file.to_owned();
            p
        }
        None => super::invoke::allow_all(candidate.file),
    };
    super::invoke::invoker(candidate.file, &config).await
}

/// The verdict's detail (guest-controlled, escaped), if any.
fn detail(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Accepted => None,
        Verdict::Rejected(why) | Verdict::Retry(why) => Some(escape_str(why)),
        Verdict::Trap(kind, detail) => Some(format!("{kind}: {}", escape_str(detail))),
        Verdict::Undeliverable(why) => Some(why.clone()),
    }
}

fn text_line(t: &Trial) -> String {
    let was = t
        .reason
        .as_deref()
        .map(|r| format!(" (dead-lettered as {})", escape_bytes(r.as_bytes())))
        .unwrap_or_default();
    let effects = if t.effects > 0 {
        format!(", {} effect(s) not committed", t.effects)
    } else {
        String::new()
    };
    match detail(&t.verdict) {
        None => format!("{} accepted{effects}{was}", t.id),
        Some(d) => format!("{} {}: {d}{was}", t.id, t.verdict.word()),
    }
}

fn json_line(t: &Trial) -> String {
    serde_json::json!({
        "id": t.id,
        "verdict": t.verdict.word(),
        "detail": detail(&t.verdict),
        "reason": t.reason.as_deref().map(|r| escape_bytes(r.as_bytes())),
        "effects": t.effects,
    })
    .to_string()
}

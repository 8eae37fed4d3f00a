//! Python and JavaScript handlers (componentize-py, componentize-js, through
//! the SDKs in `guest-sdk/`) on a private redis-server: the order validator
//! acks valid entries and dead-letters invalid ones with the right reason,
//! the effects example commits every effect, and hostile guests are
//! contained by fuel, memory and the wall clock like Rust ones.

use std::time::Duration;

use futures_util::StreamExt;
use streamhost::TrapKind;
use streamhost::config::{AllowConfig, LimitsConfig, OnTrap, PluginConfig};
use streamhost::dlq::{self, meta};
use streamhost_tests::*;

/// Python instances take ~0.2 s to create and compiling them seconds: far
/// longer than the harness's 1 s claim threshold, which would hand entries
/// out again while the first instance is still being made.
fn guest_plugin(name: &str, guest: Guest, stream: &str) -> PluginConfig {
    let mut p = plugin(name, guest.path(), stream);
    p.claim.min_idle_ms = 600_000;
    p.concurrency = 2;
    p
}

/// One entry's fields, in order.
type Fields = Vec<(String, Vec<u8>)>;

fn data(json: &str) -> Fields {
    vec![("data".into(), json.as_bytes().to_vec())]
}

/// Valid orders, then invalid ones with the reason each must be dead-lettered with.
fn validator_cases() -> (Vec<String>, Vec<(Fields, &'static str)>) {
    let valid = (0..50)
        .map(|i| format!(r#"{{"order_id": {i}, "amount_cents": {}}}"#, i * 10))
        .collect();
    let invalid = vec![
        (
            data(r#"{"order_id": 1, "amount_cents": -5}"#),
            "amount_cents must be >= 0, got -5",
        ),
        (data("[1, 2]"), "data must be a JSON object"),
        (data(r#"{"amount_cents": 1}"#), "missing field order_id"),
        (vec![("other".into(), b"x".to_vec())], "missing field data"),
        // Not UTF-8: bytes reach the guest as bytes, and it says no.
        (
            vec![("data".into(), vec![0xff, 0xfe, b'{'])],
            "data is not JSON",
        ),
    ];
    (valid, invalid)
}

async fn validator_acks_valid_and_dead_letters_invalid(guest: Guest) {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "orders";
    let (valid, invalid) = validator_cases();
    produce(&mut conn, stream, valid.len(), |i| data(&valid[i])).await;
    let mut invalid_ids = Vec::new();
    for (fields, reason) in &invalid {
        let id = produce(&mut conn, stream, 1, |_| fields.clone()).await;
        invalid_ids.push((id[0].clone(), *reason));
    }
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![guest_plugin("validator", guest, stream)],
    ))
    .await;
    let m = host.metrics("validator", stream);
    let total = (valid.len() + invalid.len()) as u64;
    assert!(
        wait_until(Duration::from_secs(120), || async {
            m.acked.get() + m.dead_lettered.get() >= total
        })
        .await,
        "{}: settled {} of {total}",
        guest.name,
        m.acked.get() + m.dead_lettered.get()
    );
    host.stop().await;
    assert_eq!(
        m.acked.get(),
        valid.len() as u64,
        "{}: valid entries acked",
        guest.name
    );
    assert_eq!(pending(&mut conn, stream, "validator").await, 0);
    let letters = dlq::range(&mut conn, "dlq:orders:validator", "-", 100)
        .await
        .unwrap();
    assert_eq!(
        letters.len(),
        invalid.len(),
        "{}: one dead letter per invalid entry",
        guest.name
    );
    for (id, reason) in &invalid_ids {
        let letter = letters
            .iter()
            .find(|d| d.meta(meta::SOURCE_ID) == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{}: entry {id} not dead-lettered", guest.name));
        assert_eq!(
            letter.meta(meta::REASON),
            Some("rejected"),
            "{}: {id}",
            guest.name
        );
        let error = letter.meta(meta::ERROR).unwrap_or_default();
        assert!(
            error.contains(reason),
            "{}: entry {id}: dlq.error {error:?} should say {reason:?}",
            guest.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_order_validator_acks_valid_and_dead_letters_invalid() {
    validator_acks_valid_and_dead_letters_invalid(guests::PYTHON_ORDER_VALIDATOR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_order_validator_acks_valid_and_dead_letters_invalid() {
    validator_acks_valid_and_dead_letters_invalid(guests::JS_ORDER_VALIDATOR).await;
}

/// Field values of one stream entry, by name.
fn field(entry: &redis::streams::StreamId, name: &str) -> String {
    match entry.map.get(name) {
        Some(redis::Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("entry {} field {name}: {other:?}", entry.id),
    }
}

async fn effects_example_commits_every_effect(guest: Guest) {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("orders.events").await.unwrap();
    let stream = "orders";
    // One customer's orders in sequence (concurrency 1: the running total is
    // deterministic), one that asks for a retry, one invalid, one forget.
    let orders = [
        r#"{"order_id": 1, "amount_cents": 100, "customer": "ann"}"#,
        r#"{"order_id": 2, "amount_cents": 250, "customer": "ann", "retry": true}"#,
        r#"{"order_id": 3, "amount_cents": 5, "customer": "bob"}"#,
        r#"{"order_id": "x", "amount_cents": 5}"#,
        r#"{"order_id": 4, "amount_cents": 1, "customer": "bob", "forget": true}"#,
    ];
    produce(&mut conn, stream, orders.len(), |i| data(orders[i])).await;
    let mut p = guest_plugin("fx", guest, stream);
    p.concurrency = 1;
    p.allow = AllowConfig {
        emit: vec!["orders.valid".into()],
        publish: vec!["orders.events".into()],
        schedule: vec!["orders.followup".into()],
        ..AllowConfig::default()
    };
    let schedule_key = p.schedule_key();
    let state_prefix = p.state_prefix();
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("fx", stream);
    assert!(
        wait_until(Duration::from_secs(120), || async {
            m.acked.get() + m.dead_lettered.get() >= orders.len() as u64
        })
        .await,
        "{}: entries settled",
        guest.name
    );
    host.stop().await;
    assert_eq!(m.acked.get(), 4, "{}", guest.name);
    assert_eq!(m.dead_lettered.get(), 1, "{}", guest.name);

    // Emitted entries, one by one.
    let emitted: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("orders.valid")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Sorted by order id: the retried order 2 may commit before or after 3;
    // the totals do not depend on it (one worker, ann's orders in order).
    let mut got: Vec<(String, String, String)> = emitted
        .ids
        .iter()
        .map(|e| {
            (
                field(e, "order_id"),
                field(e, "amount_cents"),
                field(e, "customer_total"),
            )
        })
        .collect();
    got.sort();
    let expected = [
        ("1".to_owned(), "100".to_owned(), "100".to_owned()),
        ("2".into(), "250".into(), "350".into()),
        ("3".into(), "5".into(), "5".into()),
    ];
    assert_eq!(got, expected, "{}: emitted entries", guest.name);
    for entry in &emitted.ids {
        assert_eq!(
            entry.map.len(),
            3,
            "{}: exactly the emitted fields",
            guest.name
        );
    }

    // State: ann's total; bob's deleted by the forget order.
    let ann: Option<String> = redis::cmd("GET")
        .arg(format!("{state_prefix}total:ann"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ann.as_deref(), Some("350"), "{}: state", guest.name);
    let bob: Option<String> = redis::cmd("GET")
        .arg(format!("{state_prefix}total:bob"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(bob, None, "{}: kv-delete committed", guest.name);

    // Scheduled follow-ups wait in the plugin's schedule (60 s out).
    let scheduled: u64 = redis::cmd("ZCARD")
        .arg(&schedule_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        scheduled, 3,
        "{}: one follow-up per valid order",
        guest.name
    );

    // Published once per committed order, never for the failed attempt.
    let mut messages = pubsub.on_message();
    let mut published = Vec::new();
    while published.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        published.push(msg.get_payload::<String>().unwrap());
    }
    published.sort();
    assert_eq!(
        published,
        ["validated 1", "validated 2", "validated 3"],
        "{}: published",
        guest.name
    );
    let letters = dlq::range(&mut conn, "dlq:orders:fx", "-", 10)
        .await
        .unwrap();
    assert!(
        letters[0]
            .meta(meta::ERROR)
            .is_some_and(|e| e.contains("order_id and amount_cents must be integers")),
        "{}: {:?}",
        guest.name,
        letters[0].meta(meta::ERROR)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_effects_example_commits_every_effect() {
    effects_example_commits_every_effect(guests::PYTHON_EFFECTS_EXAMPLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_effects_example_commits_every_effect() {
    effects_example_commits_every_effect(guests::JS_EFFECTS_EXAMPLE).await;
}

/// Runs hostile entries (`op` = `spin`/`hog`) through `guest` under
/// `limits`, then a harmless one: each hostile entry is dead-lettered with
/// trap `kind`, the harmless one acked by a fresh instance.
async fn contained(guest: Guest, op: &str, limits: LimitsConfig, kind: TrapKind) {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "hostile";
    let n = 3;
    produce(&mut conn, stream, n, |_| {
        vec![("op".into(), op.as_bytes().to_vec())]
    })
    .await;
    produce(&mut conn, stream, 1, |_| {
        vec![("op".into(), b"ok".to_vec())]
    })
    .await;
    let mut p = guest_plugin("hostile", guest, stream);
    p.concurrency = 1;
    p.limits = limits;
    p.retry.on_trap = OnTrap::DeadLetter;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("hostile", stream);
    let total = n as u64 + 1;
    let settled = wait_until(Duration::from_secs(120), || async {
        m.acked.get() + m.dead_lettered.get() >= total
    })
    .await;
    host.stop().await;
    let what = format!("{} {op}", guest.name);
    assert!(settled, "{what}: entries settled");
    assert_eq!(
        m.trap(kind).get(),
        n as u64,
        "{what}: every hostile entry trapped as {kind}"
    );
    assert_eq!(
        m.acked.get(),
        1,
        "{what}: the harmless entry after them is acked"
    );
    let letters = dlq::range(&mut conn, "dlq:hostile:hostile", "-", 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), n, "{what}");
    for letter in &letters {
        assert_eq!(
            letter.meta(meta::REASON),
            Some(format!("trap:{}", kind.as_str()).as_str()),
            "{what}: {:?}",
            letter.meta(meta::ERROR)
        );
    }
}

/// Limits under which only the one being tested can end a call.
fn limits(fuel: u64, timeout_ms: u64, memory_mib: u64) -> LimitsConfig {
    LimitsConfig {
        fuel,
        timeout_ms,
        memory_mib,
        ..LimitsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_guest_is_contained_by_fuel_memory_and_timeout() {
    let g = guests::PYTHON_HOSTILE;
    contained(g, "spin", limits(50_000_000, 30_000, 64), TrapKind::Fuel).await;
    contained(g, "hog", limits(u64::MAX / 4, 30_000, 48), TrapKind::Memory).await;
    contained(g, "spin", limits(u64::MAX / 4, 300, 64), TrapKind::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_guest_is_contained_by_fuel_memory_and_timeout() {
    let g = guests::JS_HOSTILE;
    contained(g, "spin", limits(50_000_000, 30_000, 64), TrapKind::Fuel).await;
    contained(g, "hog", limits(u64::MAX / 4, 30_000, 48), TrapKind::Memory).await;
    contained(g, "spin", limits(u64::MAX / 4, 300, 64), TrapKind::Timeout).await;
}

/// The guests' own unit tests run natively on the SDKs' test harnesses
/// (`streamhost.testing`, `@streamhost/sdk/testing`): no host, no Wasm.
#[test]
fn sdk_native_test_harnesses_run_the_guests_unit_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let check = |what: &str, cmd: &mut std::process::Command| {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("{what}: cannot run ({e}); install python3 and node"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{what} failed:\n{text}");
        text
    };
    for name in ["order-validator", "effects-example"] {
        let dir = root.join("tests/guests/python").join(name);
        let text = check(
            &format!("python unittest in {}", dir.display()),
            std::process::Command::new("python3")
                .current_dir(&dir)
                .env("PYTHONPATH", root.join("guest-sdk/python"))
                .args(["-m", "unittest", "-v"]),
        );
        assert!(text.contains("OK") && text.contains(" ... ok"), "{text}");
    }
    let text = check(
        "node --test in tests/guests/js",
        std::process::Command::new("node")
            .current_dir(root.join("tests/guests/js"))
            .args(["--test", "order-validator/", "effects-example/"]),
    );
    assert!(
        text.contains("# pass 4") && text.contains("# fail 0"),
        "{text}"
    );
}

/// `check --offline` on `component` with `[plugin.allow]` `allow`: its stdout.
fn check_offline(component: &str, allow: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamhost.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\n\n[[plugin]]\nname = \"g\"\n\
             component = {component:?}\nstream = \"orders\"\n{allow}"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(streamhost_bin())
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "check failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The Python and JS toolchains import every effect whatever the handler
/// calls, so `check` cannot tell which a handler makes: one line saying so
/// and naming what `[plugin.allow]` would refuse, not a warning per effect.
#[test]
fn check_aggregates_effect_warnings_for_python_and_js() {
    for guest in [guests::PYTHON_ORDER_VALIDATOR, guests::JS_ORDER_VALIDATOR] {
        let text = check_offline(guest.path(), "");
        let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning")).collect();
        assert_eq!(warnings.len(), 1, "{}: one warning:\n{text}", guest.name);
        let w = warnings[0];
        assert!(
            w.contains("imports every effect function")
                && w.contains("whatever the handler calls")
                && w.contains("[plugin.allow] `emit`, `publish` and `schedule` are empty")
                && w.contains("refused at run time (not-allowed)"),
            "{}: {w}",
            guest.name
        );
        assert!(!text.contains("imports `"), "{}: {text}", guest.name);

        let text = check_offline(
            guest.path(),
            "[plugin.allow]\nemit = [\"x\"]\npublish = [\"y\"]\n",
        );
        let w = text
            .lines()
            .find(|l| l.starts_with("warning"))
            .unwrap_or("");
        assert!(
            w.contains("[plugin.allow] `schedule` is empty, so any `schedule` it makes"),
            "{}: only schedule refused:\n{text}",
            guest.name
        );

        let all = "[plugin.allow]\nemit = [\"x\"]\npublish = [\"y\"]\nschedule = [\"z\"]\n";
        let text = check_offline(guest.path(), all);
        assert!(
            !text.contains("warning"),
            "{}: all allowed:\n{text}",
            guest.name
        );
    }
}

//! Property tests, each for a bounded number of cases: config text of any
//! shape never panics the parser and a valid config round-trips through
//! TOML; any entry — any bytes in its field names and values — goes through
//! a running host to its dead letters and back through a replay byte for
//! byte. (The RESP reply parser's properties are unit tests beside it, in
//! `host/src/streams/resp.rs`, since the parser is private.)

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use redis::aio::MultiplexedConnection;
use streamhost::config::{Config, PluginConfig, RetryConfig};
use streamhost::dlq;
use streamhost::entry::RawField;
use streamhost_tests::*;

// ---- config parsing -------------------------------------------------------

/// Keys and values of the config's shape, mixed with junk, so generated
/// texts reach validation and not only the TOML parser.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "component",
        "stream",
        "batch",
        "concurrency",
        "read_ahead_mib",
        "block_ms",
        "isolation",
        "group",
        "consumer",
        "bogus",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z:{}*]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| format!("{s:?}")),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{ max_attempts = 0 }".to_owned()),
    ];
    let line = prop_oneof![
        4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => Just("[[plugin]]".to_owned()),
        1 => prop::sample::select(vec!["[redis]", "[plugin.retry]", "[plugin.limits]", "[admin]", "[[retention]]"])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop::collection::vec(line, 0..16).prop_map(|lines| {
        let mut text = "[[plugin]]\n".to_owned();
        text.push_str(&lines.join("\n"));
        text
    })
}

prop_compose! {
    /// A plugin table that validation accepts, with names and stream keys of
    /// any Unicode (TOML strings carry any of it).
    fn valid_plugin(index: usize)(
        name in "[a-zA-Z0-9_.-]{1,20}",
        stream in any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        batch in 1usize..=100_000,
        concurrency in 1usize..=64,
        max_attempts in 1u32..50,
        initial_ms in 0u64..10_000,
        extra_ms in 0u64..100_000,
    ) -> PluginConfig {
        PluginConfig {
            batch,
            concurrency,
            retry: RetryConfig {
                max_attempts,
                initial_ms,
                max_ms: initial_ms + extra_ms,
                ..RetryConfig::default()
            },
            ..PluginConfig::new(&format!("{name}{index}"), format!("{name}.wasm"), &stream)
        }
    }
}

#[test]
fn config_text_of_any_shape_is_an_error_or_a_config_never_a_panic() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 2_000,
        ..RunnerConfig::default()
    });
    runner
        .run(&config_text(), |text| {
            match Config::parse(&text) {
                Ok(config) => {
                    // What parses must also validate when parsed again.
                    let again = toml::to_string(&config).expect("serialise");
                    prop_assert_eq!(Config::parse(&again).expect("re-parse"), config);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_valid_config_round_trips_through_toml() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 500,
        ..RunnerConfig::default()
    });
    let plugins = (valid_plugin(0), valid_plugin(1)).prop_map(|(a, b)| vec![a, b]);
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(&plugins, |plugins| {
            let config = Config {
                plugins,
                ..Config::default()
            };
            if config.validate().is_err() {
                // Two generated names or state prefixes that collide: not
                // this property's concern.
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let text = toml::to_string(&config).expect("serialise");
            prop_assert_eq!(Config::parse(&text).expect("parse"), config);
            Ok(())
        })
        .unwrap();
    assert!(
        accepted.get() >= 250,
        "only {} of 500 generated configs were valid: the property tested little",
        accepted.get()
    );
}

#[test]
fn an_unknown_key_anywhere_in_a_plugin_is_named() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 300,
        ..RunnerConfig::default()
    });
    let table = prop::sample::select(vec![
        "",
        "[plugin.retry]\n",
        "[plugin.limits]\n",
        "[plugin.claim]\n",
    ]);
    runner
        .run(&(table, "[a-z]{3,12}_x"), |(table, key)| {
            let text = format!(
                "[[plugin]]\nname = \"p\"\ncomponent = \"p.wasm\"\nstream = \"s\"\n{table}{key} = 1\n"
            );
            let err = Config::parse(&text).expect_err("unknown key accepted");
            prop_assert!(err.to_string().contains(&key), "{err} does not name {key}");
            Ok(())
        })
        .unwrap();
}

// ---- entry → DLQ → replay, byte for byte ------------------------------------

const STREAM: &str = "prop:events";
const DLQ: &str = "dlq:prop:events:recorder";

fn raw_field() -> impl Strategy<Value = RawField> {
    (
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(|(name, value)| RawField { name, value })
}

/// An entry of any field names and values; the recorder rejects entries
/// with a `reject` field, and one whose names are not all UTF-8 is
/// dead-lettered before handling. Either way it reaches the DLQ.
fn hostile_entry() -> impl Strategy<Value = Vec<RawField>> {
    (
        prop::collection::vec(raw_field(), 0..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut fields, at)| {
            let reject = RawField {
                name: b"reject".to_vec(),
                value: b"1".to_vec(),
            };
            let at = at.index(fields.len() + 1);
            fields.insert(at, reject);
            fields
        })
}

async fn xadd_raw(conn: &mut MultiplexedConnection, fields: &[RawField]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM).arg("*");
    for f in fields {
        cmd.arg(&f.name[..]).arg(&f.value[..]);
    }
    cmd.query_async(conn).await.expect("XADD")
}

/// The DLQ's dead letters: source id → (dead-letter id, original fields).
async fn dead_letters(
    conn: &mut MultiplexedConnection,
) -> HashMap<String, (String, Vec<RawField>)> {
    raw_entries(conn, DLQ)
        .await
        .into_iter()
        .map(|e| {
            let r = dlq::redeliver::decode(e.fields.unwrap_or_default());
            (r.source_id.expect("source id"), (e.id, r.fields))
        })
        .collect()
}

/// Waits until each of `ids` has a dead letter other than those in `not`.
async fn wait_dead(
    conn: &mut MultiplexedConnection,
    ids: &[String],
    not: &[String],
) -> HashMap<String, (String, Vec<RawField>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dead = dead_letters(conn).await;
        let all = ids.iter().all(|id| {
            dead.get(id)
                .is_some_and(|(letter, _)| !not.contains(letter))
        });
        if all {
            return dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all of {ids:?} reached the DLQ: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn any_entry_reaches_its_dead_letters_and_comes_back_from_replay_byte_for_byte() {
    let redis = start_redis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let conn = rt.block_on(connect(&redis.url()));
    let mut recorder = plugin("recorder", artifacts::RECORDER, STREAM);
    recorder.retry.max_attempts = 1;
    let host = rt.block_on(InProcessHost::start(config(&redis.url(), vec![recorder])));

    let mut runner = TestRunner::new(RunnerConfig {
        cases: 24,
        ..RunnerConfig::default()
    });
    let entries = prop::collection::vec(hostile_entry(), 1..6);
    let result = runner.run(&entries, |entries| {
        let mut conn = conn.clone();
        rt.block_on(async {
            let mut ids = Vec::new();
            for fields in &entries {
                ids.push(xadd_raw(&mut conn, fields).await);
            }
            let dead = wait_dead(&mut conn, &ids, &[]).await;
            for (id, fields) in ids.iter().zip(&entries) {
                prop_assert_eq!(&dead[id].1, fields, "dead letter of {}", id);
            }
            let letters: Vec<String> = ids.iter().map(|id| dead[id].0.clone()).collect();
            let report = dlq::replay(
                &mut conn,
                DLQ,
                &dlq::Filter::default(),
                &dlq::Selection::Ids(letters.clone()),
                &dlq::ReplayOptions::default(),
                |_, _| {},
                |_| {},
            )
            .await
            .expect("replay");
            prop_assert_eq!(report.replayed, letters.len() as u64);
            // Handled (and refused) again: new dead letters of the same
            // entries, still byte for byte.
            let again = wait_dead(&mut conn, &ids, &letters).await;
            for (id, fields) in ids.iter().zip(&entries) {
                prop_assert_eq!(&again[id].1, fields, "dead letter of {} after replay", id);
            }
            Ok(())
        })
    });
    rt.block_on(host.stop());
    result.unwrap();
}

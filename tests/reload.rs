//! Live reload: new config for new requests, in-flight streams finish on the old one.

use crate::common::process::{key_toml, serve_command, ConfigFile, Served};
use crate::common::*;

async fn chat(gw: &impl Gateway, key: &str, model: &str) -> u16 {
    gw.chat(key).body(chat_body(model)).fetch_status().await
}

#[tokio::test]
async fn a_reload_changes_rules_and_limits_for_new_requests_only() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    key_rate(&mut config.auth.keys[1], 1, 2);
    config.auth.keys.push(key("carol", "sk-orgate-carol"));
    let gw = TestGateway::start(config.clone()).await;

    // Before: bob drains his bucket; alice starts a long stream.
    assert_eq!(
        (
            chat(&gw, BOB_KEY, MODEL).await,
            chat(&gw, BOB_KEY, MODEL).await
        ),
        (200, 200)
    );
    assert_eq!(chat(&gw, BOB_KEY, MODEL).await, 429);
    let stream = gw
        .chat(ALICE_KEY)
        .paced(20, 25)
        .body(format!(
            r#"{{"model":"{MODEL}:free","messages":[],"stream":true}}"#
        ))
        .fetch()
        .await;
    assert_eq!(stream.status(), 200);
    let stream = Streamed::first_piece(stream).await;

    // Reload: `:free` models denied, alice limited to one request a minute.
    let mut reloaded = config.clone();
    reloaded.policy.models.deny = vec!["*:free".into()];
    key_rate(&mut reloaded.auth.keys[0], 1, 1);
    gw.reload(Ok(reloaded)).await;
    // The reload is applied by the serving task, moments later.
    eventually("`:free` denied after the reload", async || {
        chat(&gw, "sk-orgate-carol", &format!("{MODEL}:free")).await == 403
    })
    .await;
    assert_eq!(chat(&gw, ALICE_KEY, MODEL).await, 200);
    assert_eq!(
        chat(&gw, ALICE_KEY, MODEL).await,
        429,
        "the new limit applies"
    );
    assert_eq!(
        chat(&gw, BOB_KEY, MODEL).await,
        429,
        "bob's limits did not change: his drained bucket carried over"
    );

    // The stream that started before the reload finishes on the old rules.
    assert!(stream.read_to_end().await.ends_with(b"data: [DONE]\n\n"));
    let applied = r#"orgate_config_reloads_total{kind="applied"}"#;
    assert_eq!(gw.metric(applied).await, 1.0);
}

#[tokio::test]
async fn a_broken_reload_is_refused_and_the_running_config_stays() {
    let mock = MockOpenRouter::start().await;
    let mut config = config_for(&mock);
    config.policy.models.deny = vec!["*:free".into()];
    let gw = TestGateway::start(config.clone()).await;
    let (_, problems) = orgate::config::parse_toml("[limits]\nburts = 1\n");
    gw.reload(Err(orgate::config::Problems(problems))).await;
    // A config that loads but cannot be built (a key's upstream key is missing) is refused too.
    let mut unbuildable = config.clone();
    unbuildable.auth.keys[0].upstream_key_env = Some("NOT_SET_ANYWHERE".into());
    gw.reload(Ok(unbuildable)).await;
    let refused = r#"orgate_config_reloads_total{kind="refused"}"#;
    eventually("both reloads refused", async || {
        gw.metric(refused).await == 2.0
    })
    .await;
    assert_eq!(
        chat(&gw, ALICE_KEY, &format!("{MODEL}:free")).await,
        403,
        "the old rules hold"
    );
    assert_eq!(chat(&gw, ALICE_KEY, MODEL).await, 200);
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let mock = MockOpenRouter::start().await;
    let base = mock.upstream_toml() + &key_toml("alice", ALICE_KEY);
    let config = ConfigFile::new(&base);
    let mut served = Served::start(&mut serve_command(&config.path)).await;
    let free = format!("{MODEL}:free");
    assert_eq!(chat(&served, ALICE_KEY, &free).await, 200);

    config.rewrite(&format!("{base}[policy]\nmodels.deny = [\"*:free\"]\n"));
    served.hup();
    served.wait_for("config reloaded").await;
    assert_eq!(chat(&served, ALICE_KEY, &free).await, 403);

    config.rewrite(&format!(
        "{base}[policy]\nmodels.deny = [\"*:free\"]\nunknown_knob = 1\n"
    ));
    served.hup();
    let refused = served.wait_for("config reload refused").await;
    assert!(
        refused.contains("policy.unknown_knob: unknown key"),
        "{refused}"
    );
    assert_eq!(
        chat(&served, ALICE_KEY, &free).await,
        403,
        "still the last good config"
    );
    served.terminate();
    assert_eq!(served.finish().await.0, Some(0));
}

#[tokio::test]
async fn a_reload_keeps_the_upstream_pools_unless_upstream_settings_change() {
    use crate::common::internals::{rebuild, same_upstream, snapshot};
    let mock = MockOpenRouter::start().await;
    let first = snapshot(config_for(&mock));

    let mut new_rules = config_for(&mock);
    new_rules.policy.models.deny = vec!["openai/*".into()];
    let second = rebuild(new_rules.clone(), &first);
    assert!(same_upstream(&first, &second));

    let mut new_upstream = new_rules;
    new_upstream.upstream.retries += 1;
    let third = rebuild(new_upstream, &second);
    assert!(!same_upstream(&second, &third));
}

#[tokio::test]
async fn the_model_list_is_learnt_again_from_the_upstream_a_reload_names() {
    let (first, gw) = start_gateway().await;
    first.next_model_list_request().await;
    let second = MockOpenRouter::start().await;
    gw.reload(Ok(config_for(&second))).await;
    let asked = second.next_model_list_request().await;
    assert_eq!(asked.bearer(), Some(UPSTREAM_KEY));
}

//! Config parsing and validation: never panics, and a config read without problems renders
//! (as `orgate check` prints it) to TOML that reads back to the same config and the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::config::{parse_toml, validate};
use orgate::internals::CompiledPolicy;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let (config, problems) = parse_toml(text);
    let verdict = validate(&config);
    // Every problem says why. (Its path may be empty: a section or key can be named `""`.)
    for problem in problems.iter().chain(&verdict) {
        assert!(
            !problem.why.is_empty(),
            "a problem without a reason: {problem}"
        );
    }
    if !problems.is_empty() {
        return;
    }

    let rendered = config.to_toml();
    assert!(
        !rendered.starts_with("# cannot render config"),
        "a config read without problems does not render: {rendered}\nfrom:\n{text}"
    );
    let (reread, reread_problems) = parse_toml(&rendered);
    assert!(
        reread_problems.is_empty(),
        "the rendered config does not read back: {reread_problems:?}\nrendered:\n{rendered}\nfrom:\n{text}"
    );
    assert_eq!(
        reread.to_toml(),
        rendered,
        "the rendered config reads back to a different config\nfrom:\n{text}"
    );
    assert_eq!(
        validate(&reread),
        verdict,
        "the rendered config gets a different verdict\nrendered:\n{rendered}"
    );

    // A config that validates names only policies that exist; compiling them may still find
    // layering problems (lists that cannot meet, which `orgate check` reports after loading),
    // and then says what they are.
    if verdict.is_empty() {
        for key in &config.auth.keys {
            if let Some(name) = &key.policy {
                assert!(config.policies.contains_key(name), "a key names a missing policy");
            }
        }
        let names = std::iter::once(None).chain(config.policies.keys().map(|n| Some(n.as_str())));
        for name in names {
            if let Err(e) = CompiledPolicy::for_key(&config, name) {
                assert!(
                    !e.problems.is_empty() && e.problems.iter().all(|p| !p.is_empty()),
                    "a policy that does not compile must say why"
                );
            }
        }
    }
});

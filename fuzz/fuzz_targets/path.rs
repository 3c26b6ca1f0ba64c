//! `api_suffix`: whatever it accepts stays under the upstream API prefix once joined to the
//! base URL and parsed the way reqwest parses it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orgate::internals::api_suffix;

const BASE: &str = "https://up.example/api/v1";

fn check(path: &str) {
    for prefix in ["/v1", "/api/v1"] {
        let Ok(suffix) = api_suffix(path, prefix) else {
            continue;
        };
        assert!(
            path.starts_with(prefix) && path.ends_with(suffix),
            "{path:?}: suffix {suffix:?} is not the tail after {prefix:?}"
        );
        let joined = format!("{BASE}{suffix}");
        let url = reqwest::Url::parse(&joined)
            .unwrap_or_else(|e| panic!("{path:?} accepted, but {joined:?} does not parse: {e}"));
        assert_eq!(
            url.host_str(),
            Some("up.example"),
            "{path:?} accepted, but {joined:?} leaves the host: {url}"
        );
        assert!(
            url.path().starts_with("/api/v1/"),
            "{path:?} accepted, but {joined:?} leaves the prefix: {url}"
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    // Any string at all: `api_suffix` is the gate, whatever parsed the request before it.
    check(text);
    // And exactly what the gateway hands it: the path of a request target hyper accepted.
    if let Ok(uri) = text.parse::<http::uri::PathAndQuery>() {
        check(uri.path());
    }
});

//! Keeping forwarded paths under the API prefix.
//!
//! A path is forwarded as the client wrote it (still percent-encoded), appended to the upstream
//! base URL, so it must not be able to climb out of it: any segment that is empty (`//`) or that
//! decodes to `.` or `..`, and any encoded slash or backslash, is refused, never "cleaned up".

use crate::error::GatewayError;

/// The part of `path` after `prefix` (`/api/v1` or `/v1`), checked: `"/models/user"`.
pub fn api_suffix<'p>(path: &'p str, prefix: &str) -> Result<&'p str, GatewayError> {
    let refuse = |why: &str| {
        Err(GatewayError::BadRequest(format!(
            "path {path:?} refused: {why}"
        )))
    };
    let Some(suffix) = path.strip_prefix(prefix) else {
        return refuse("outside the API prefix");
    };
    let Some(rest) = suffix.strip_prefix('/') else {
        return refuse("outside the API prefix");
    };
    if rest.is_empty() {
        return refuse("no API path after the prefix");
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return refuse("empty path segment");
        }
        // None of these is in a path hyper parsed, and URL parsing would read them otherwise:
        // it drops tabs and newlines, and controls and spaces at the ends, and ends the path at
        // `?` or `#`; `.\t.` or `..#` would become `..` upstream.
        if segment
            .bytes()
            .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#'))
        {
            return refuse("control character, space, '?' or '#'");
        }
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || segment.contains('\\') {
            return refuse("encoded slash or backslash");
        }
        let decoded = lower.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return refuse("dot segment");
        }
    }
    Ok(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_pass() {
        assert_eq!(api_suffix("/api/v1/models", "/api/v1").unwrap(), "/models");
        assert_eq!(
            api_suffix("/v1/models/openai/gpt-4o/endpoints", "/v1").unwrap(),
            "/models/openai/gpt-4o/endpoints"
        );
        assert_eq!(api_suffix("/v1/generation", "/v1").unwrap(), "/generation");
    }

    #[test]
    fn escapes_are_refused() {
        for bad in [
            "/v1/../admin",
            "/v1/models/../../x",
            "/v1/%2e%2e/x",
            "/v1/%2E./x",
            "/v1/.%2e",
            "/v1//evil.example/x",
            "/v1/a%2fb",
            "/v1/a%5Cb",
            "/v1/a\\b",
            "/v1/.",
            "/v1/",
            "/v1",
            "/v1x/models",
        ] {
            assert!(api_suffix(bad, "/v1").is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn characters_a_url_parser_reads_differently_are_refused() {
        // Found by fuzzing (fuzz/fuzz_targets/path.rs): URL parsing drops tabs and newlines
        // anywhere and C0 controls and spaces at the ends, and ends the path at `?` or `#`, so
        // `"%2e%2E\0"` and `"..#!"` became `..` once joined to the base. hyper never hands such
        // a path over; the check does not rely on it.
        for bad in [
            "/v1/%2e%2E\0\u{c}",
            "/v1/..#!",
            "/v1/x/..?a=b",
            "/v1/.\t./x",
            "/v1/%2e\n%2e/x",
            "/v1/x/.. ",
            "/v1/models\r",
            "/v1/a b",
        ] {
            assert!(api_suffix(bad, "/v1").is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        /// Whatever passes, joined to a base, stays under the base once normalised.
        #[test]
        fn nothing_that_passes_climbs_out(segments in proptest::collection::vec("[a-zA-Z0-9%._~-]{0,6}", 1..6)) {
            let path = format!("/v1/{}", segments.join("/"));
            if let Ok(suffix) = api_suffix(&path, "/v1") {
                let url = url::Url::parse(&format!("https://up.example/api/v1{suffix}")).unwrap();
                prop_assert!(url.path().starts_with("/api/v1/"), "{} -> {}", path, url);
                prop_assert_eq!(url.host_str(), Some("up.example"));
            }
        }
    }
}

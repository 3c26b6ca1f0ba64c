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
        if segment.contains('\\') || has_escape(segment, b'f') || has_escape(segment, b'c') {
            return refuse("encoded slash or backslash");
        }
        if matches!(dot_units(segment), Some(1 | 2)) {
            return refuse("dot segment");
        }
    }
    Ok(suffix)
}

/// Whether `segment` holds `%2<hex>` or `%5<hex>` for the letter `hex` in either case: `%2F`
/// (slash) for `f`, `%5C` (backslash) for `c`. Read in place: every request's path goes
/// through here.
fn has_escape(segment: &str, hex: u8) -> bool {
    let digit = if hex == b'f' { b'2' } else { b'5' };
    segment
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == digit && w[2].eq_ignore_ascii_case(&hex))
}

/// How many dots `segment` is when made only of `.` and `%2e` (either case), else `None`.
fn dot_units(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return None,
        };
        dots += 1;
    }
    Some(dots)
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

    /// The checks as first written (lower-cased and decoded copies of the segment), which the
    /// in-place ones must agree with.
    fn refused_by_copies(segment: &str) -> bool {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        lower.contains("%2f")
            || lower.contains("%5c")
            || segment.contains('\\')
            || decoded == "."
            || decoded == ".."
    }

    proptest! {
        /// The in-place checks refuse exactly what the copying ones refused.
        #[test]
        fn in_place_checks_agree_with_copies(segment in "([.%2eEfFcC5\\\\a]|%2[eEfF]|%5[cC]){1,6}") {
            let in_place = segment.contains('\\')
                || has_escape(&segment, b'f')
                || has_escape(&segment, b'c')
                || matches!(dot_units(&segment), Some(1 | 2));
            prop_assert_eq!(in_place, refused_by_copies(&segment), "{:?}", segment);
        }

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

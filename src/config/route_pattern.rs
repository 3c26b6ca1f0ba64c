//! `[routes] allow` entries: `"METHOD /path"` under the API prefix, where `*` matches one path
//! segment and `**` (last) the rest. Parsed at load time, so a typo is a config problem, not a
//! route that silently never matches.

use http::Method;

/// One parsed `[routes] allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    pub method: Method,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: every remaining segment (at least one).
    Rest,
}

impl RoutePattern {
    /// Parses `"POST /images"`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (method, path) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("{text:?} must be \"METHOD /path\", e.g. \"POST /images\""))?;
        let method = Method::from_bytes(method.as_bytes())
            .ok()
            .filter(|m| m.as_str().bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| format!("{method:?} is not an HTTP method (upper case, e.g. GET)"))?;
        let path = path.trim();
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!(
                "{path:?} must start with '/' (a path under the API prefix, e.g. /images)"
            ));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "" => return Err(format!("{path:?} has an empty segment")),
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("{path:?}: `**` may only be the last segment")),
                "*" => Segment::One,
                p if p.contains('*') => {
                    return Err(format!(
                        "{path:?}: `*` must be a whole segment (\"/a/*\", not \"/a*\")"
                    ))
                }
                "." | ".." => return Err(format!("{path:?} has a dot segment")),
                p => Segment::Literal(p.to_owned()),
            };
            segments.push(segment);
        }
        Ok(Self { method, segments })
    }

    /// Whether a request `method` on `suffix` (the decoded path under the API prefix, starting
    /// with `/`) is what this pattern opens.
    pub fn matches(&self, method: &Method, suffix: &str) -> bool {
        if *method != self.method {
            return false;
        }
        let Some(rest) = suffix.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return parts.next().is_some_and(|p| !p.is_empty()),
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, method: &str, suffix: &str) -> bool {
        RoutePattern::parse(pattern)
            .unwrap()
            .matches(&Method::from_bytes(method.as_bytes()).unwrap(), suffix)
    }

    #[test]
    fn patterns_match_by_method_and_segment() {
        assert!(matches("POST /images", "POST", "/images"));
        assert!(!matches("POST /images", "GET", "/images"));
        assert!(!matches("POST /images", "POST", "/images/x"));
        assert!(!matches("POST /images", "POST", "/images/"));
        assert!(matches("GET /generation", "GET", "/generation"));
        assert!(matches("GET /files/*", "GET", "/files/abc"));
        assert!(!matches("GET /files/*", "GET", "/files/abc/content"));
        assert!(!matches("GET /files/*", "GET", "/files"));
        assert!(matches("GET /files/**", "GET", "/files/abc/content"));
        assert!(!matches("GET /files/**", "GET", "/files"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("/images", "METHOD /path"),
            ("post /images", "HTTP method"),
            ("POST images", "must start with '/'"),
            ("POST /a//b", "empty segment"),
            ("POST /**/b", "last segment"),
            ("POST /a*", "whole segment"),
            ("GET /../key", "dot segment"),
        ] {
            let err = RoutePattern::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

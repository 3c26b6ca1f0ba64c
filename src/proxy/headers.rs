//! Which headers cross the gateway, in each direction.
//!
//! Going up: everything the client sent except hop-by-hop headers and its credentials; the
//! upstream key is injected, attribution headers are added when the client sent none. Coming
//! back: everything except hop-by-hop headers.

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::upstream::Upstream;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Client headers never sent upstream, beyond hop-by-hop ones.
const NOT_FORWARDED: [HeaderName; 9] = [
    header::HOST,
    // Recomputed for the body we send, which is sent decoded.
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    // Client credentials: never forwarded.
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    header::COOKIE,
    // Asking for identity lets the gateway read usage from responses as they pass.
    header::ACCEPT_ENCODING,
    header::EXPECT,
    header::UPGRADE,
];

const HTTP_REFERER: HeaderName = HeaderName::from_static("http-referer");
const X_OPENROUTER_TITLE: HeaderName = HeaderName::from_static("x-openrouter-title");
const X_TITLE: HeaderName = HeaderName::from_static("x-title");

/// The headers to send upstream for a client's request.
pub(crate) fn upstream_request_headers(
    client: &HeaderMap,
    upstream_auth: &HeaderValue,
    upstream: &Upstream,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len() + 4);
    let named_by_connection = connection_tokens(client);
    for (name, value) in client {
        if HOP_BY_HOP.contains(name)
            || NOT_FORWARDED.contains(name)
            || named_by_connection.contains(name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::AUTHORIZATION, upstream_auth.clone());
    if let Some(referer) = &upstream.referer {
        if !out.contains_key(&HTTP_REFERER) {
            out.insert(HTTP_REFERER, referer.clone());
        }
    }
    if let Some(title) = &upstream.title {
        if !out.contains_key(&X_OPENROUTER_TITLE) && !out.contains_key(&X_TITLE) {
            out.insert(X_OPENROUTER_TITLE, title.clone());
            out.insert(X_TITLE, title.clone());
        }
    }
    out
}

/// The upstream's response headers as the client gets them. Most responses carry no
/// hop-by-hop header at all, and are passed on as they are.
pub(crate) fn client_response_headers(upstream: HeaderMap) -> HeaderMap {
    let hop_by_hop = |name: &HeaderName| HOP_BY_HOP.contains(name) || name == header::UPGRADE;
    if !upstream.keys().any(hop_by_hop) {
        // Without `Connection` no other header can be named hop-by-hop.
        return upstream;
    }
    let mut out = HeaderMap::with_capacity(upstream.len());
    let named_by_connection = connection_tokens(&upstream);
    for (name, value) in &upstream {
        if hop_by_hop(name) || named_by_connection.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Header names listed in `Connection` (they are hop-by-hop too).
fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;

    #[test]
    fn credentials_and_hop_by_hop_stay_behind() {
        let config = UpstreamConfig {
            referer: "https://example.org".into(),
            title: "Team app".into(),
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::new(&config, 1).unwrap();
        let mut client = HeaderMap::new();
        client.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client-key"),
        );
        client.insert("x-api-key", HeaderValue::from_static("client-key"));
        client.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        client.insert("x-secret-hop", HeaderValue::from_static("1"));
        client.insert("x-openrouter-title", HeaderValue::from_static("Mine"));
        client.insert("x-session-id", HeaderValue::from_static("s1"));
        let out = upstream_request_headers(
            &client,
            &HeaderValue::from_static("Bearer upstream"),
            &upstream,
        );
        assert_eq!(out[header::AUTHORIZATION], "Bearer upstream");
        assert!(out.get("x-api-key").is_none());
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get(header::CONNECTION).is_none());
        assert_eq!(out["x-openrouter-title"], "Mine");
        assert!(out.get("x-title").is_none(), "the client's own title wins");
        assert_eq!(out["http-referer"], "https://example.org");
        assert_eq!(out["x-session-id"], "s1");
    }

    #[test]
    fn response_hop_by_hop_headers_stay_behind_and_the_rest_pass_as_sent() {
        let mut upstream = HeaderMap::new();
        upstream.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        upstream.insert("x-generation-id", HeaderValue::from_static("gen-1"));
        assert_eq!(client_response_headers(upstream.clone()), upstream);

        upstream.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        upstream.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-upstream-hop"),
        );
        upstream.insert("x-upstream-hop", HeaderValue::from_static("1"));
        let out = client_response_headers(upstream);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "x-generation-id"]);
    }
}

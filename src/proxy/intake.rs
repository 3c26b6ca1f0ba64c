//! What the gateway reads of a request before any door looks at it: the head's size (431) and
//! the body, whole, bounded in size (413) and time (408), decoded from gzip, br or zstd (415 for
//! anything else).

use std::pin::Pin;

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap};

use crate::config::ServerConfig;
use crate::error::GatewayError;

/// The largest request head the gateway reads, in its own words: a 431 in JSON. hyper's read
/// buffer is twice this (`crate::server::connection_builder`); a head past that gets hyper's bare
/// 431.
pub(crate) const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Refuses a request head (target and header fields, as written on the wire) over
/// [`MAX_HEAD_BYTES`].
pub(super) fn check_head_size(parts: &Parts) -> Result<(), GatewayError> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    // `name: value\r\n` per field.
    let fields: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if target + fields > MAX_HEAD_BYTES {
        return Err(GatewayError::HeadTooLarge {
            limit: MAX_HEAD_BYTES,
        });
    }
    Ok(())
}

/// Reads a request body whole: more than `server.max_body` bytes is a 413 (before reading,
/// when `Content-Length` already says so), a body not in by `server.body_read_timeout` a 408
/// (a client trickling bytes would hold its slot for minutes). A body in gzip, br or zstd is
/// decoded, the limit counting the decoded bytes; any other encoding is a 415.
pub(super) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    server: &ServerConfig,
) -> Result<Bytes, GatewayError> {
    let limit = server.max_body.bytes();
    let encoding = Encoding::of(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let timeout = server.body_read_timeout.get();
    let read = async {
        match encoding {
            None => read_plain(body, limit).await,
            Some(encoding) => read_decoded(body, encoding, limit).await,
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| GatewayError::BodyTimeout(timeout))?
}

async fn read_plain(body: Body, limit: u64) -> Result<Bytes, GatewayError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            GatewayError::PayloadTooLarge { limit }
        } else {
            GatewayError::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

/// The content codings a request body is decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The body's coding by its `Content-Encoding`: `None` when it has none (or `identity`), a
    /// 415 for one the gateway cannot decode.
    fn of(headers: &HeaderMap) -> Result<Option<Encoding>, GatewayError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let name = value.as_bytes().trim_ascii();
        let known = [
            (&b"gzip"[..], Some(Encoding::Gzip)),
            (b"x-gzip", Some(Encoding::Gzip)),
            (b"br", Some(Encoding::Brotli)),
            (b"zstd", Some(Encoding::Zstd)),
            (b"identity", None),
        ];
        known
            .into_iter()
            .find(|(known, _)| name.eq_ignore_ascii_case(known))
            .map(|(_, encoding)| encoding)
            .ok_or_else(|| {
                GatewayError::UnsupportedEncoding(String::from_utf8_lossy(name).into_owned())
            })
    }
}

/// Decodes `body` as it is read, stopping one byte past `limit` decoded bytes (a small body
/// may decode to gigabytes).
async fn read_decoded(body: Body, encoding: Encoding, limit: u64) -> Result<Bytes, GatewayError> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use futures_util::TryStreamExt;
    use tokio::io::{AsyncRead, AsyncReadExt};

    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let compressed = tokio_util::io::StreamReader::new(stream);
    let decoder: Pin<Box<dyn AsyncRead + Send>> = match encoding {
        Encoding::Gzip => Box::pin(GzipDecoder::new(compressed)),
        Encoding::Brotli => Box::pin(BrotliDecoder::new(compressed)),
        Encoding::Zstd => Box::pin(ZstdDecoder::new(compressed)),
    };
    let mut decoded = Vec::new();
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut decoded)
        .await
        .map_err(|e| GatewayError::BadRequest(format!("could not decode the request body: {e}")))?;
    if decoded.len() as u64 > limit {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(decoded))
}

//! The request body as it goes upstream: whole, or in pieces sent one after another.
//!
//! A large chat body that the policy edited is the client's bytes with a small change in the
//! middle; sending it as pieces (the client's own bytes around the rewritten field) saves
//! copying the whole body and holding it twice while it is sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::chat_request::ChatRequest;

/// Untouched values from this size up are shared with the client's body, not copied.
const SHARED_FROM: usize = 64 * 1024;

/// A request body for the upstream. Cloning it is cheap: every attempt of a retried request
/// sends its own clone.
#[derive(Debug, Clone)]
pub enum OutgoingBody {
    Whole(Bytes),
    Pieces(Arc<[Bytes]>),
}

impl OutgoingBody {
    /// The chat body to send for `chat`, parsed from `original`: in pieces when it is large
    /// enough for a value to be shared.
    pub fn chat(chat: &ChatRequest<'_>, original: &Bytes) -> Self {
        if original.len() < SHARED_FROM {
            return OutgoingBody::Whole(chat.to_body(original));
        }
        OutgoingBody::from_pieces(chat.to_pieces(original, SHARED_FROM))
    }

    /// The body made of `pieces`, in order.
    pub fn from_pieces(mut pieces: Vec<Bytes>) -> Self {
        match pieces.len() {
            0 => OutgoingBody::Whole(Bytes::new()),
            1 => OutgoingBody::Whole(pieces.pop().unwrap_or_default()),
            _ => OutgoingBody::Pieces(pieces.into()),
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            OutgoingBody::Whole(bytes) => bytes.len(),
            OutgoingBody::Pieces(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body reqwest sends. Pieces go with their exact total as `Content-Length`, as a
    /// whole body would: the upstream never sees chunked encoding for them.
    pub fn into_reqwest(self) -> reqwest::Body {
        match self {
            OutgoingBody::Whole(bytes) => bytes.into(),
            OutgoingBody::Pieces(pieces) => {
                let remaining = pieces.iter().map(|p| p.len() as u64).sum();
                reqwest::Body::wrap(PiecesBody {
                    pieces,
                    next: 0,
                    remaining,
                })
            }
        }
    }
}

impl From<Bytes> for OutgoingBody {
    fn from(bytes: Bytes) -> Self {
        OutgoingBody::Whole(bytes)
    }
}

/// The pieces as an HTTP body, one frame each, with an exact size.
struct PiecesBody {
    pieces: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl Body for PiecesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(piece) = self.pieces.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        self.remaining -= piece.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.pieces.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn pieces_read_back_as_the_body_with_its_exact_size() {
        let body = OutgoingBody::from_pieces(vec![
            Bytes::from_static(b"{\"messages\":"),
            Bytes::from_static(b"[1,2]"),
            Bytes::from_static(b",\"provider\":{}}"),
        ]);
        assert_eq!(body.len(), 32);
        let body = PiecesBody {
            pieces: match body {
                OutgoingBody::Pieces(pieces) => pieces,
                OutgoingBody::Whole(_) => panic!("three pieces make a Pieces body"),
            },
            next: 0,
            remaining: 32,
        };
        assert_eq!(body.size_hint().exact(), Some(32));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"messages\":[1,2],\"provider\":{}}");
        assert!(matches!(
            OutgoingBody::from_pieces(vec![Bytes::from_static(b"{}")]),
            OutgoingBody::Whole(_)
        ));
    }
}

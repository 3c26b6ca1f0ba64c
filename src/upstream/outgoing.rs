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

use crate::request_body::RequestBody;

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
    /// The body to send for `request`, parsed from `original`: in pieces when it is large
    /// enough for a value to be shared.
    pub fn from_request(request: &RequestBody<'_>, original: &Bytes) -> Self {
        if original.len() < SHARED_FROM {
            return OutgoingBody::Whole(request.to_body(original));
        }
        OutgoingBody::from_pieces(request.to_pieces(original, SHARED_FROM))
    }

    /// The body made of `pieces`, in order.
    pub fn from_pieces(pieces: Vec<Bytes>) -> Self {
        match <[Bytes; 1]>::try_from(pieces) {
            Ok([whole]) => OutgoingBody::Whole(whole),
            Err(pieces) => OutgoingBody::Pieces(pieces.into()),
        }
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            OutgoingBody::Whole(bytes) => bytes.len(),
            OutgoingBody::Pieces(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }

    /// The body reqwest sends. Pieces go with their exact total as `Content-Length`, as a
    /// whole body would: the upstream never sees chunked encoding for them.
    pub fn into_reqwest(self) -> reqwest::Body {
        match self {
            OutgoingBody::Whole(bytes) => bytes.into(),
            OutgoingBody::Pieces(pieces) => reqwest::Body::wrap(PiecesBody { pieces, next: 0 }),
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
    /// The first piece not yet sent.
    next: usize,
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
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.pieces.len()
    }

    fn size_hint(&self) -> SizeHint {
        let unsent = self.pieces.get(self.next..).unwrap_or_default();
        SizeHint::with_exact(unsent.iter().map(|p| p.len() as u64).sum())
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
        let mut body = PiecesBody {
            pieces: match body {
                OutgoingBody::Pieces(pieces) => pieces,
                OutgoingBody::Whole(_) => panic!("three pieces make a Pieces body"),
            },
            next: 0,
        };
        assert_eq!(body.size_hint().exact(), Some(32));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(body.size_hint().exact(), Some(20), "what is left to send");
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            [first, rest].concat(),
            b"{\"messages\":[1,2],\"provider\":{}}"
        );
        assert!(matches!(
            OutgoingBody::from_pieces(vec![Bytes::from_static(b"{}")]),
            OutgoingBody::Whole(_)
        ));
    }
}

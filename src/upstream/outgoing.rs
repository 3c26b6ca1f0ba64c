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

    /// The body to send. Pieces go with their exact total as `Content-Length`, as a whole
    /// body would: the upstream never sees chunked encoding for them.
    pub fn into_body(self) -> SendBody {
        match self {
            OutgoingBody::Whole(bytes) => SendBody::Whole(Some(bytes)),
            OutgoingBody::Pieces(pieces) => SendBody::Pieces { pieces, next: 0 },
        }
    }
}

impl From<Bytes> for OutgoingBody {
    fn from(bytes: Bytes) -> Self {
        OutgoingBody::Whole(bytes)
    }
}

/// An [`OutgoingBody`] being sent: one frame for a whole body, one a piece for pieces, always
/// with an exact size.
#[derive(Debug)]
pub enum SendBody {
    /// `None` once sent.
    Whole(Option<Bytes>),
    Pieces {
        pieces: Arc<[Bytes]>,
        /// The first piece not yet sent.
        next: usize,
    },
}

impl Body for SendBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let piece = match self.get_mut() {
            SendBody::Whole(whole) => whole.take(),
            SendBody::Pieces { pieces, next } => {
                let piece = pieces.get(*next).cloned();
                *next += 1;
                piece
            }
        };
        Poll::Ready(piece.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SendBody::Whole(whole) => whole.is_none(),
            SendBody::Pieces { pieces, next } => *next >= pieces.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let unsent = match self {
            SendBody::Whole(whole) => whole.as_ref().map_or(0, Bytes::len),
            SendBody::Pieces { pieces, next } => pieces
                .get(*next..)
                .unwrap_or_default()
                .iter()
                .map(Bytes::len)
                .sum(),
        };
        SizeHint::with_exact(unsent as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn bodies_read_back_whole_with_their_exact_size() {
        let body = OutgoingBody::from_pieces(vec![
            Bytes::from_static(b"{\"messages\":"),
            Bytes::from_static(b"[1,2]"),
            Bytes::from_static(b",\"provider\":{}}"),
        ]);
        assert_eq!(body.len(), 32);
        assert!(matches!(body, OutgoingBody::Pieces(_)), "three pieces");
        let mut body = body.into_body();
        assert_eq!(body.size_hint().exact(), Some(32));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(body.size_hint().exact(), Some(20), "what is left to send");
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            [first, rest].concat(),
            b"{\"messages\":[1,2],\"provider\":{}}"
        );
        let whole = OutgoingBody::from_pieces(vec![Bytes::from_static(b"{}")]);
        assert!(matches!(whole, OutgoingBody::Whole(_)));
        let mut whole = whole.into_body();
        assert_eq!(whole.size_hint().exact(), Some(2));
        assert_eq!(
            whole.frame().await.unwrap().unwrap().into_data().unwrap(),
            "{}"
        );
        assert!(whole.is_end_stream() && whole.frame().await.is_none());
    }
}

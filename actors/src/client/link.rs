//! What a [`super::DbConnection`] is connected through.
//!
//! An enum rather than a trait object: the in-process path is benchmarked, and each of
//! its calls stays a direct call on the [`Session`] behind one match. Both links deliver
//! the same [`crate::messages::ServerMessage`] values into a [`SessionQueue`], so the
//! connection's processing code never knows which one it reads.

use std::ops::Deref;
use std::sync::Arc;

use tidings_engine::{Identity, Schema};

use super::remote::RemoteLink;
use crate::messages::{ClientMessage, ConnectionId, Protocol};
use crate::queue::SessionQueue;
use crate::session::Session;
use crate::system::TidingsError;

/// The transport under a connection.
pub(crate) enum Link {
    /// A session of a [`crate::Tidings`] in this process.
    InProcess(Session),
    /// A WebSocket to a server, served by a background thread.
    Remote(RemoteLink),
}

/// The queue a connection currently reads: borrowed in process, and the current
/// socket's (it changes on reconnect) over WebSocket.
pub(crate) enum QueueRef<'a> {
    Borrowed(&'a Arc<SessionQueue>),
    Owned(Arc<SessionQueue>),
}

impl Deref for QueueRef<'_> {
    type Target = SessionQueue;

    fn deref(&self) -> &SessionQueue {
        match self {
            QueueRef::Borrowed(q) => q,
            QueueRef::Owned(q) => q,
        }
    }
}

impl Link {
    pub(crate) fn identity(&self) -> Identity {
        match self {
            Link::InProcess(s) => s.identity(),
            Link::Remote(r) => r.identity(),
        }
    }

    pub(crate) fn connection_id(&self) -> ConnectionId {
        match self {
            Link::InProcess(s) => s.id(),
            Link::Remote(r) => r.connection_id(),
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Link::InProcess(s) => s.protocol(),
            Link::Remote(r) => r.protocol().version(),
        }
    }

    pub(crate) fn queue(&self) -> QueueRef<'_> {
        match self {
            Link::InProcess(s) => QueueRef::Borrowed(s.queue()),
            Link::Remote(r) => QueueRef::Owned(r.queue()),
        }
    }

    pub(crate) fn send(&self, message: ClientMessage) -> Result<(), TidingsError> {
        match self {
            Link::InProcess(s) => s.send(message),
            Link::Remote(r) => r.send(message).map_err(TidingsError::from),
        }
    }

    /// The tables this connection knows: the server's own in process, the application's
    /// (checked against the server's at connect) over WebSocket.
    pub(crate) fn schema(&self) -> Arc<Schema> {
        match self {
            Link::InProcess(s) => s.tidings().datastore().schema(),
            Link::Remote(r) => r.schema().clone(),
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Link::InProcess(s) => s.close(),
            Link::Remote(r) => r.close(),
        }
    }

    pub(crate) fn remote(&self) -> Option<&RemoteLink> {
        match self {
            Link::InProcess(_) => None,
            Link::Remote(r) => Some(r),
        }
    }
}

//! A raw session: a connection's identity, its outbound queue and its request path,
//! without the SDK's cache. Transports (the WebSocket server) are built on it; the
//! in-process [`crate::DbConnection`] adds a cache and callbacks on top.

use std::sync::Arc;

use tidings_engine::Identity;

use crate::manager::ManagerRequest;
use crate::messages::{ClientMessage, ConnectionId, Protocol};
use crate::queue::SessionQueue;
use crate::system::{Tidings, TidingsError};

/// One connection's server side.
pub struct Session {
    tidings: Tidings,
    id: ConnectionId,
    identity: Identity,
    protocol: Protocol,
    queue: Arc<SessionQueue>,
}

impl Session {
    pub(crate) fn new(
        tidings: Tidings,
        id: ConnectionId,
        identity: Identity,
        protocol: Protocol,
        queue: Arc<SessionQueue>,
    ) -> Self {
        Session {
            tidings,
            id,
            identity,
            protocol,
            queue,
        }
    }

    /// The connection id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The identity it acts as.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Its protocol version.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Its outbound queue (filled by its hub, drained by the transport).
    pub fn queue(&self) -> &Arc<SessionQueue> {
        &self.queue
    }

    /// The Tidings it belongs to.
    pub fn tidings(&self) -> &Tidings {
        &self.tidings
    }

    /// Sends a request, in order, into the transaction actor's FIFO.
    pub fn send(&self, message: ClientMessage) -> Result<(), TidingsError> {
        match message {
            ClientMessage::CallReducer {
                request_id,
                reducer,
                args,
            } => self
                .tidings
                .call_from(self.id, self.identity, request_id, &reducer, args),
            ClientMessage::V1CallReducer {
                request_id,
                reducer,
                args,
                flags,
            } => self.tidings.call_from_with_flags(
                self.id,
                self.identity,
                request_id,
                &reducer,
                args,
                flags,
            ),
            message => self.tidings.forward(ManagerRequest::Client {
                connection: self.id,
                message,
            }),
        }
    }

    /// Ends the session: the server forgets its query sets; its queue stops filling.
    pub fn close(&self) {
        self.tidings.forward_unchecked(ManagerRequest::Disconnect {
            connection: self.id,
        });
        self.queue.close();
    }
}

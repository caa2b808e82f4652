//! A raw session: a connection's identity, its outbound queue and its request path,
//! without the SDK's cache. Transports (the WebSocket server) are built on it; the
//! in-process [`crate::DbConnection`] adds a cache and callbacks on top.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tidings_engine::Identity;

use crate::manager::ManagerRequest;
use crate::messages::{CallReducerFlags, ClientMessage, ConnectionId, Protocol};
use crate::queue::SessionQueue;
use crate::system::{Tidings, TidingsError};
use crate::transaction::{CallReducer, InFlight};

/// One connection's server side.
pub struct Session {
    tidings: Tidings,
    id: ConnectionId,
    identity: Identity,
    protocol: Protocol,
    queue: Arc<SessionQueue>,
    /// Requests sent and not yet handled by the transaction actor.
    in_flight: Arc<AtomicUsize>,
    in_flight_max: usize,
}

impl Session {
    pub(crate) fn new(
        tidings: Tidings,
        id: ConnectionId,
        identity: Identity,
        protocol: Protocol,
        queue: Arc<SessionQueue>,
        in_flight_max: usize,
    ) -> Self {
        Session {
            tidings,
            id,
            identity,
            protocol,
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
            in_flight_max,
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
    ///
    /// Refused with [`TidingsError::TooManyInFlight`] while this connection already has
    /// its most requests waiting there, and with [`TidingsError::Overloaded`] when the
    /// queue all connections share is full.
    pub fn send(&self, message: ClientMessage) -> Result<(), TidingsError> {
        let ticket = InFlight::take(&self.in_flight, self.in_flight_max)
            .ok_or(TidingsError::TooManyInFlight(self.in_flight_max))?;
        let call = |request_id, reducer, args, flags, ticket| CallReducer {
            caller: self.identity,
            connection: Some(self.id),
            request_id,
            reducer,
            args,
            flags,
            ticket: Some(ticket),
        };
        match message {
            ClientMessage::CallReducer {
                request_id,
                reducer,
                args,
            } => self.tidings.call_from(call(
                request_id,
                reducer,
                args,
                CallReducerFlags::FullUpdate,
                ticket,
            )),
            ClientMessage::V1CallReducer {
                request_id,
                reducer,
                args,
                flags,
            } => self
                .tidings
                .call_from(call(request_id, reducer, args, flags, ticket)),
            message => self.tidings.forward(
                ManagerRequest::Client {
                    connection: self.id,
                    message,
                },
                ticket,
            ),
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

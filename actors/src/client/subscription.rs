//! Subscriptions: query sets with their callbacks, and their handles.

use std::sync::atomic::Ordering;

use super::{DbConnection, EventContext, PendingSet};
use crate::messages::{ClientMessage, Protocol, QuerySetId, RequestId};
use crate::system::TidingsError;

/// Builds a subscription with its callbacks.
pub struct SubscriptionBuilder {
    pub(super) conn: DbConnection,
    pub(super) pending: PendingSet,
}

impl SubscriptionBuilder {
    /// Runs once the initial rows are in the cache.
    pub fn on_applied(mut self, f: impl FnOnce(&EventContext) + Send + 'static) -> Self {
        self.pending.on_applied = Some(Box::new(f));
        self
    }

    /// Runs if the subscription is rejected.
    pub fn on_error(mut self, f: impl FnOnce(&EventContext, &str) + Send + 'static) -> Self {
        self.pending.on_error = Some(Box::new(f));
        self
    }

    /// Sends the subscription as one new query set (v1: `SubscribeMulti`).
    pub fn subscribe<S: AsRef<str>>(
        self,
        queries: &[S],
    ) -> Result<SubscriptionHandle, TidingsError> {
        let queries: Vec<String> = queries.iter().map(|q| q.as_ref().to_string()).collect();
        let protocol = self.conn.protocol();
        self.send(None, move |request_id, query_set_id| match protocol {
            Protocol::V2 => ClientMessage::Subscribe {
                request_id,
                query_set_id,
                queries,
            },
            Protocol::V1 => ClientMessage::V1SubscribeMulti {
                request_id,
                query_id: query_set_id,
                queries,
            },
        })
    }

    /// Subscribes to every readable table by name (v2: event tables included).
    pub fn subscribe_to_all_tables(self) -> Result<SubscriptionHandle, TidingsError> {
        let queries = self.conn.all_table_queries();
        self.subscribe(&queries)
    }

    /// v1 `SubscribeSingle`: one query under a new id.
    pub fn subscribe_v1_single(self, query: &str) -> Result<SubscriptionHandle, TidingsError> {
        let query = query.to_string();
        self.send(None, move |request_id, query_id| {
            ClientMessage::V1SubscribeSingle {
                request_id,
                query_id,
                query,
            }
        })
    }

    /// v1 legacy `Subscribe`: atomically replaces the legacy subscription.
    pub fn subscribe_v1_legacy<S: AsRef<str>>(
        self,
        queries: &[S],
    ) -> Result<SubscriptionHandle, TidingsError> {
        let queries: Vec<String> = queries.iter().map(|q| q.as_ref().to_string()).collect();
        self.send(
            Some(crate::messages::V1_LEGACY_QUERY_SET),
            move |request_id, _| ClientMessage::V1Subscribe {
                request_id,
                queries,
            },
        )
    }

    fn send(
        self,
        fixed_set: Option<QuerySetId>,
        message: impl FnOnce(RequestId, QuerySetId) -> ClientMessage,
    ) -> Result<SubscriptionHandle, TidingsError> {
        let conn = self.conn;
        let query_set_id =
            fixed_set.unwrap_or_else(|| conn.inner.next_set.fetch_add(1, Ordering::Relaxed));
        let request_id = conn.request_id();
        conn.inner.sets.lock().insert(query_set_id, self.pending);
        let message = message(request_id, query_set_id);
        if let Err(e) = conn.send(message) {
            conn.inner.sets.lock().remove(&query_set_id);
            return Err(e);
        }
        Ok(SubscriptionHandle { conn, query_set_id })
    }
}

/// A live query set.
pub struct SubscriptionHandle {
    conn: DbConnection,
    query_set_id: QuerySetId,
}

impl SubscriptionHandle {
    /// The query set's id.
    pub fn query_set_id(&self) -> QuerySetId {
        self.query_set_id
    }

    /// Ends the query set; `then` runs once its rows are gone from the cache.
    pub fn unsubscribe_then(
        self,
        then: impl FnOnce(&EventContext) + Send + 'static,
    ) -> Result<(), TidingsError> {
        self.conn
            .inner
            .sets
            .lock()
            .entry(self.query_set_id)
            .or_default()
            .on_unsubscribed = Some(Box::new(then));
        let request_id = self.conn.request_id();
        let message = match self.conn.protocol() {
            Protocol::V2 => ClientMessage::Unsubscribe {
                request_id,
                query_set_id: self.query_set_id,
                send_dropped_rows: false,
            },
            Protocol::V1 => ClientMessage::V1Unsubscribe {
                request_id,
                query_id: self.query_set_id,
            },
        };
        self.conn.send(message)
    }
}

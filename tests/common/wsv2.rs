//! A v2 WebSocket client at the frame level (awc), for tests that speak the protocol
//! directly: send a message, take the next frame or message, with a deadline on every
//! wait and pings answered on the way.

use std::time::Duration;

use actix_web::web::Bytes;
use awc::ws::{Frame, Message};
use futures::{SinkExt, StreamExt};
use tidings::actors::wire::v2::{self, ClientMessageWire, ServerMessageWire};

/// An open WebSocket.
pub type Conn = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// The longest any single wait for a frame may take.
pub const FRAME_WAIT: Duration = Duration::from_secs(20);

/// Sends `msg` as a binary frame.
pub async fn send(conn: &mut Conn, msg: ClientMessageWire) {
    conn.send(Message::Binary(Bytes::from(v2::encode_client(&msg))))
        .await
        .expect("send");
}

/// The next frame that is not a ping (pings are answered); fails after a deadline.
pub async fn next_frame(conn: &mut Conn) -> Frame {
    loop {
        let frame = actix_rt::time::timeout(FRAME_WAIT, conn.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("frame");
        match frame {
            Frame::Ping(p) => conn.send(Message::Pong(p)).await.expect("pong"),
            other => return other,
        }
    }
}

/// The next binary frame's bytes; any other frame fails the test.
pub async fn next_binary(conn: &mut Conn) -> Bytes {
    match next_frame(conn).await {
        Frame::Binary(b) => b,
        other => panic!("unexpected frame {other:?}"),
    }
}

/// The next server message.
pub async fn next(conn: &mut Conn) -> ServerMessageWire<'static> {
    v2::decode_server(&next_binary(conn).await).expect("decodes")
}

/// A `CallReducer` with MessagePack `args`.
pub fn call(request_id: u32, reducer: &str, args: Vec<u8>) -> ClientMessageWire {
    ClientMessageWire::CallReducer {
        request_id,
        reducer: reducer.into(),
        args,
    }
}

//! The benchmark's WebSocket clients: raw TCP and a minimal frame reader.
//!
//! A pool is a few threads, each a single-threaded tokio runtime running many
//! connections as tasks. A connection does the HTTP upgrade by hand, then reads frames
//! with a parser that only finds frame boundaries (opcode and length): after setup, a
//! binary frame is counted, not decoded. So a delivery costs the client one wake-up and
//! one `read`, the least any client can spend per socket, and the client side is the same
//! for Tidings and for the floor. Only setup frames (`InitialConnection`,
//! `SubscribeApplied`) are decoded, to know when a connection is subscribed.
//!
//! Every connection reports to a shared [`Tally`]: the thread that waits arms it for a
//! number of frames, and the client whose frame completes that number stamps the time
//! and unparks the waiter, so nobody spins.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use tidings::actors::wire::v2::{self, ClientMessageWire, ServerMessageWire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::Res;

/// Connections doing their handshake at once, per pool (keeps the listen backlog short).
const CONNECTING_MAX: usize = 128;
/// First read buffer of a connection; it grows for larger frames.
const READ_BUFFER_BYTES: usize = 4096;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

/// What a connection does before it counts frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Tidings: read `InitialConnection`, subscribe to `SELECT * FROM message`, read
    /// `SubscribeApplied`.
    Subscribed,
    /// Tidings: read `InitialConnection` only (an idle session).
    Connected,
    /// The floor: read its one greeting frame.
    Floor,
    /// Tidings: subscribe like `Subscribed`, then never read again (a stuck client),
    /// holding the socket open until the pool ends.
    Stalled,
}

/// Counters shared by a pool's connections and the thread that measures.
pub struct Tally {
    base: Instant,
    frames: AtomicU64,
    target: AtomicU64,
    done_ns: AtomicU64,
    ready: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    /// The last data frame connection 0 received.
    sample: Mutex<Option<Vec<u8>>>,
    waiter: Thread,
}

impl Tally {
    /// A tally whose waits happen on the calling thread.
    pub fn new() -> Arc<Self> {
        Arc::new(Tally {
            base: Instant::now(),
            frames: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done_ns: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            sample: Mutex::new(None),
            waiter: std::thread::current(),
        })
    }

    /// Nanoseconds since the tally was made.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Expects `more` data frames from now on; [`Tally::wait_done`] returns when the last
    /// of them arrives. Call only while no frame is in flight.
    pub fn arm(&self, more: u64) {
        self.done_ns.store(0, Ordering::Release);
        let target = self.frames.load(Ordering::Acquire) + more;
        self.target.store(target, Ordering::Release);
    }

    fn data_frame(&self) {
        let n = self.frames.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            self.done_ns.store(self.now_ns().max(1), Ordering::Release);
            self.waiter.unpark();
        }
    }

    fn connection_ready(&self) {
        self.ready.fetch_add(1, Ordering::AcqRel);
        self.waiter.unpark();
    }

    fn connection_failed(&self, e: String) {
        self.first_error
            .lock()
            .map(|mut f| {
                f.get_or_insert(e);
            })
            .ok();
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.waiter.unpark();
    }

    fn check(&self) -> Res<()> {
        if self.failed.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let first = self
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        Err(format!(
            "{} client connection(s) failed; first: {first}",
            self.failed.load(Ordering::Acquire)
        )
        .into())
    }

    /// When the armed frames were all received (ns on this tally's clock).
    pub fn wait_done(&self, limit: Duration) -> Res<u64> {
        let end = Instant::now() + limit;
        loop {
            let done = self.done_ns.load(Ordering::Acquire);
            if done != 0 {
                return Ok(done);
            }
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Err(format!(
                    "timed out after {limit:?}: {} of {} frames received",
                    self.frames.load(Ordering::Acquire),
                    self.target.load(Ordering::Acquire)
                )
                .into());
            }
            std::thread::park_timeout(end - now);
        }
    }

    /// Waits until `n` connections finished their setup.
    pub fn wait_ready(&self, n: usize, limit: Duration) -> Res<()> {
        let end = Instant::now() + limit;
        while self.ready.load(Ordering::Acquire) < n {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Err(format!(
                    "timed out after {limit:?}: {} of {n} connections set up",
                    self.ready.load(Ordering::Acquire)
                )
                .into());
            }
            std::thread::park_timeout(end - now);
        }
        self.check()
    }

    /// The last data frame connection 0 received.
    pub fn sample(&self) -> Option<Vec<u8>> {
        self.sample.lock().ok().and_then(|s| s.clone())
    }
}

struct Job {
    addr: SocketAddr,
    setup: Setup,
    index: usize,
}

/// Client threads and their connections; dropping it closes every connection.
pub struct Clients {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    opened: usize,
}

impl Clients {
    /// `threads` client threads reporting to `tally`.
    pub fn start(threads: usize, tally: &Arc<Tally>) -> Res<Self> {
        let gate = Arc::new(Semaphore::new(CONNECTING_MAX));
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for t in 0..threads.max(1) {
            let (send, mut recv) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()?;
            let (tally, gate) = (tally.clone(), gate.clone());
            let handle = std::thread::Builder::new()
                .name(format!("ws-client-{t}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while let Some(job) = recv.recv().await {
                            let (tally, gate) = (tally.clone(), gate.clone());
                            tokio::spawn(async move {
                                if let Err(e) = run(job, &tally, &gate).await {
                                    tally.connection_failed(e.to_string());
                                }
                            });
                        }
                    });
                })?;
            senders.push(send);
            handles.push(handle);
        }
        Ok(Clients {
            senders,
            threads: handles,
            opened: 0,
        })
    }

    /// Opens `n` more connections to `addr`, spread over the threads; returns at once.
    pub fn open(&mut self, addr: SocketAddr, setup: Setup, n: usize) -> Res<()> {
        for _ in 0..n {
            let index = self.opened;
            self.opened += 1;
            self.senders[index % self.senders.len()]
                .send(Job { addr, setup, index })
                .map_err(|_| "a client thread ended")?;
        }
        Ok(())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection: handshake, setup, then count frames until the server closes.
async fn run(job: Job, tally: &Tally, gate: &Semaphore) -> Res<()> {
    let permit = gate.acquire().await?;
    let mut s = TcpStream::connect(job.addr).await?;
    s.set_nodelay(true)?;
    let protocol = match job.setup {
        Setup::Floor => String::new(),
        _ => format!("Sec-WebSocket-Protocol: {}\r\n", v2::SUBPROTOCOL),
    };
    let request = format!(
        "GET /subscribe HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n",
        job.addr
    );
    s.write_all(request.as_bytes()).await?;
    let mut r = Reader::new();
    r.read_head(&mut s).await?;
    match job.setup {
        Setup::Floor => {
            r.next_binary(&mut s).await?;
        }
        Setup::Connected | Setup::Subscribed | Setup::Stalled => {
            let first = r.next_binary(&mut s).await?;
            match v2::decode_server(r.bytes(first))? {
                ServerMessageWire::InitialConnection { .. } => {}
                other => return Err(format!("expected InitialConnection, got {other:?}").into()),
            }
            if matches!(job.setup, Setup::Subscribed | Setup::Stalled) {
                let subscribe = v2::encode_client(&ClientMessageWire::Subscribe {
                    request_id: 1,
                    query_set_id: 1,
                    queries: vec!["SELECT * FROM message".into()],
                });
                s.write_all(&client_frame(OP_BINARY, &subscribe)).await?;
                let applied = r.next_binary(&mut s).await?;
                match v2::decode_server(r.bytes(applied))? {
                    ServerMessageWire::SubscribeApplied { .. } => {}
                    other => {
                        return Err(format!("expected SubscribeApplied, got {other:?}").into());
                    }
                }
            }
        }
    }
    drop(permit);
    tally.connection_ready();
    if job.setup == Setup::Stalled {
        // Keeps `s` open and unread for as long as the pool runs.
        std::future::pending::<()>().await;
    }
    loop {
        let (op, payload) = r.next(&mut s).await?;
        match op {
            OP_BINARY | OP_TEXT => {
                if job.index == 0
                    && let Ok(mut sample) = tally.sample.lock()
                {
                    *sample = Some(r.bytes(payload).to_vec());
                }
                tally.data_frame();
            }
            OP_PING => {
                let pong = client_frame(0xA, r.bytes(payload));
                s.write_all(&pong).await?;
            }
            OP_CLOSE => return Ok(()),
            _ => {}
        }
    }
}

/// A masked client frame. The masking key is zero, which leaves the payload as it is:
/// RFC 6455 requires clients to mask, and a benchmark gains nothing from random keys.
fn client_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | op);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The opcode, payload range and total length of the first whole frame in `b`.
fn parse(b: &[u8]) -> Option<(u8, Range<usize>, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, mut at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if b1 & 0x80 != 0 {
        // Servers never mask; skip a key anyway rather than misread the stream.
        at += 4;
    }
    (b.len() >= at + len).then_some((b0 & 0x0f, at..at + len, at + len))
}

/// A connection's read buffer: `buf[lo..hi]` is received and not yet consumed.
struct Reader {
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
}

impl Reader {
    fn new() -> Self {
        Reader {
            buf: vec![0; READ_BUFFER_BYTES],
            lo: 0,
            hi: 0,
        }
    }

    async fn fill(&mut self, s: &mut TcpStream) -> Res<()> {
        if self.lo == self.hi {
            (self.lo, self.hi) = (0, 0);
        } else if self.lo > 0 {
            self.buf.copy_within(self.lo..self.hi, 0);
            self.hi -= self.lo;
            self.lo = 0;
        }
        if self.hi == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = s.read(&mut self.buf[self.hi..]).await?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        self.hi += n;
        Ok(())
    }

    /// Reads the HTTP response head; fails unless it is `101 Switching Protocols`.
    async fn read_head(&mut self, s: &mut TcpStream) -> Res<()> {
        loop {
            let got = &self.buf[self.lo..self.hi];
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).into_owned();
                self.lo += end + 4;
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(format!("the upgrade was refused: {head}").into());
                }
                return Ok(());
            }
            self.fill(s).await?;
        }
    }

    /// The next frame's opcode and payload range (valid until the next read).
    async fn next(&mut self, s: &mut TcpStream) -> Res<(u8, Range<usize>)> {
        loop {
            if let Some((op, payload, total)) = parse(&self.buf[self.lo..self.hi]) {
                let start = self.lo;
                self.lo += total;
                return Ok((op, start + payload.start..start + payload.end));
            }
            self.fill(s).await?;
        }
    }

    /// The next binary frame's payload range, answering pings on the way.
    async fn next_binary(&mut self, s: &mut TcpStream) -> Res<Range<usize>> {
        loop {
            let (op, payload) = self.next(s).await?;
            match op {
                OP_BINARY => return Ok(payload),
                OP_PING => s.write_all(&client_frame(0xA, self.bytes(payload))).await?,
                OP_CLOSE => return Err("the server closed the WebSocket during setup".into()),
                _ => {}
            }
        }
    }

    fn bytes(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }
}

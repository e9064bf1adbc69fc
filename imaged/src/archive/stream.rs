//! The two ends of an archive RPC as the synchronous tar code sees them: a `Write` that
//! sends what it gets as gRPC chunks ([`ChunkSender`]), and a `Read` over the chunks a
//! client sends ([`ChannelReader`]). Both block on a bounded channel, so a slow client slows
//! the tar down instead of the daemon buffering the archive.

use std::io::{self, Read, Write};

use berth_proto::imaged as pb;
use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Status;

/// Bytes per chunk sent: large enough that the per-message cost vanishes, far below the
/// 64 MiB message limit of the daemon and its client.
pub const CHUNK_SIZE: usize = 1 << 20;

/// Sends what is written as [`pb::Chunk`]s of [`CHUNK_SIZE`] bytes. Call from a blocking
/// thread; [`ChunkSender::finish`] sends the last, short chunk.
pub struct ChunkSender {
    tx: mpsc::Sender<Result<pb::Chunk, Status>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    pub fn new(tx: mpsc::Sender<Result<pb::Chunk, Status>>) -> ChunkSender {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(CHUNK_SIZE),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.tx
            .blocking_send(Ok(pb::Chunk { data }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client stopped reading"))
    }

    /// Send what is buffered.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }

    /// End the stream with an error status (after whatever was sent).
    pub fn fail(self, status: Status) {
        let _ = self.tx.blocking_send(Err(status));
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // A chunk goes when it is full: flushing early would only make small messages.
        Ok(())
    }
}

/// What the async side of a client-streaming RPC hands the blocking reader: the next bytes,
/// or why the client's stream broke.
pub type Piece = Result<Bytes, String>;

/// Reads the bytes a client streams, from a blocking thread. The end of the channel is the
/// end of the stream; a broken client stream is an error, never a silent short archive.
pub struct ChannelReader {
    rx: mpsc::Receiver<Piece>,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Piece>) -> ChannelReader {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }

    /// Read and drop whatever is left, so that a client still sending after the end of the
    /// archive (trailing zero blocks, padding) sees its stream taken whole.
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("the client's stream broke: {e}"),
                    ))
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Forward a client's request stream into a [`ChannelReader`]'s channel until it ends, the
/// reader stops taking (it finished or failed: its result says which), or the stream breaks.
pub async fn forward<T>(
    mut stream: tonic::Streaming<T>,
    tx: mpsc::Sender<Piece>,
    data: impl Fn(T) -> Bytes,
) {
    loop {
        let piece = match stream.message().await {
            Ok(Some(m)) => Ok(data(m)),
            Ok(None) => return,
            Err(status) => Err(status.message().to_string()),
        };
        let broke = piece.is_err();
        if tx.send(piece).await.is_err() || broke {
            return;
        }
    }
}

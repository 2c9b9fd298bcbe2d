//! Framing: `u32 header length | u32 data length | JSON header | raw data`, big-endian.
//! Bulk bytes (process output, file contents) travel as raw data beside a small header, so
//! they are neither escaped nor copied into JSON.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upper bounds on what one frame may carry; a peer that exceeds them is cut off.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest JSON header accepted.
    pub max_header: u32,
    /// Largest data part accepted.
    pub max_data: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 1 << 20,
            max_data: 1 << 20,
        }
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or closed mid-frame.
    #[error("agent connection failed")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame larger than allowed.
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(u32, u32),
    /// The header was not a valid message.
    #[error("malformed message")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one frame: `msg` as the JSON header and `data` as the raw part.
pub async fn write_frame<W, T>(w: &mut W, msg: &T, data: &[u8]) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let header = serde_json::to_vec(msg)?;
    let data_len = u32::try_from(data.len()).map_err(|_| FrameError::TooLarge(u32::MAX, 0))?;
    let mut prefix = [0u8; 8];
    prefix[..4].copy_from_slice(&(header.len() as u32).to_be_bytes());
    prefix[4..].copy_from_slice(&data_len.to_be_bytes());
    w.write_all(&prefix).await?;
    w.write_all(&header).await?;
    w.write_all(data).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream before a frame started.
pub async fn read_frame<R, T>(r: &mut R, limits: Limits) -> Result<Option<(T, Vec<u8>)>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 8];
    match r.read_exact(&mut prefix[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut prefix[1..]).await?;
    let header_len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes"));
    let data_len = u32::from_be_bytes(prefix[4..].try_into().expect("4 bytes"));
    if header_len > limits.max_header {
        return Err(FrameError::TooLarge(header_len, limits.max_header));
    }
    if data_len > limits.max_data {
        return Err(FrameError::TooLarge(data_len, limits.max_data));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).await?;
    let mut data = vec![0u8; data_len as usize];
    r.read_exact(&mut data).await?;
    Ok(Some((serde_json::from_slice(&header)?, data)))
}

/// Reads frames, keeping what it has read of a frame between calls: unlike [`read_frame`],
/// [`FrameReader::next`] may lose a race in `select!` without losing bytes (a frame is
/// written in pieces, so a reader often waits in the middle of one). It never reads past the
/// frame's end: what follows (a descriptor passed with `SCM_RIGHTS`) stays in the stream.
pub struct FrameReader<R> {
    inner: R,
    limits: Limits,
    buf: Vec<u8>,
    /// How much of `buf` holds bytes of the frame being read.
    filled: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads from `inner`, refusing frames over `limits`.
    pub fn new(inner: R, limits: Limits) -> Self {
        FrameReader {
            inner,
            limits,
            buf: Vec::new(),
            filled: 0,
        }
    }

    /// The stream, for writing, or for what follows a frame.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next frame; `Ok(None)` at a clean end of stream. Cancel-safe.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<(T, Vec<u8>)>, FrameError> {
        loop {
            let (header_len, total) = self.frame_size()?;
            if self.filled >= 8 && self.filled == total {
                let header_end = 8 + header_len;
                let message = serde_json::from_slice(&self.buf[8..header_end])?;
                let data = self.buf[header_end..total].to_vec();
                self.filled = 0;
                return Ok(Some((message, data)));
            }
            if self.buf.len() < total {
                self.buf.resize(total, 0);
            }
            // Cancel-safe: a read either completes (and is counted) or reads nothing.
            let n = self.inner.read(&mut self.buf[self.filled..total]).await?;
            if n == 0 {
                return if self.filled == 0 {
                    Ok(None)
                } else {
                    Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
                };
            }
            self.filled += n;
        }
    }

    /// The header's length and the whole frame's, as far as they are known: until the
    /// prefix is in, the prefix is all there is to read.
    fn frame_size(&self) -> Result<(usize, usize), FrameError> {
        if self.filled < 8 {
            return Ok((0, 8));
        }
        let header_len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        let data_len = u32::from_be_bytes(self.buf[4..8].try_into().expect("4 bytes"));
        if header_len > self.limits.max_header {
            return Err(FrameError::TooLarge(header_len, self.limits.max_header));
        }
        if data_len > self.limits.max_data {
            return Err(FrameError::TooLarge(data_len, self.limits.max_data));
        }
        Ok((
            header_len as usize,
            8 + header_len as usize + data_len as usize,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Request};

    #[tokio::test]
    async fn frame_round_trip_keeps_header_and_data() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &Event::Stdout, b"hello\0world")
            .await
            .unwrap();
        let (ev, data): (Event, _) = read_frame(&mut b, Limits::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev, Event::Stdout);
        assert_eq!(data, b"hello\0world");
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_allocation() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &Request::Ping, &[7u8; 100])
            .await
            .unwrap();
        let limits = Limits {
            max_header: 1024,
            max_data: 10,
        };
        let err = read_frame::<_, Request>(&mut b, limits).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(100, 10)), "{err:?}");
    }

    #[tokio::test]
    async fn clean_close_is_not_an_error() {
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        assert!(
            read_frame::<_, Event>(&mut b, Limits::default())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_reader_cancelled_in_the_middle_of_a_frame_loses_nothing() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut frames = FrameReader::new(b, Limits::default());
        let mut encoded = Vec::new();
        write_frame(&mut encoded, &Event::Stdout, b"hello")
            .await
            .unwrap();
        // Half a frame, then a read that loses a race.
        a.write_all(&encoded[..10]).await.unwrap();
        let raced =
            tokio::time::timeout(std::time::Duration::from_millis(20), frames.next::<Event>())
                .await;
        assert!(raced.is_err(), "no whole frame yet");
        a.write_all(&encoded[10..]).await.unwrap();
        let (event, data) = frames.next::<Event>().await.unwrap().unwrap();
        assert_eq!((event, data), (Event::Stdout, b"hello".to_vec()));
        // What follows a frame stays in the stream.
        a.write_all(&encoded).await.unwrap();
        a.write_all(b"!").await.unwrap();
        frames.next::<Event>().await.unwrap().unwrap();
        let mut rest = [0u8; 1];
        frames.get_mut().read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"!");
        drop(a);
        assert!(frames.next::<Event>().await.unwrap().is_none());
    }
}

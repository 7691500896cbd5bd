//! Content encodings of resource streams: gzip, xz, bz2, zstd (upstream's exact names).
//!
//! Decoding accepts what upstream's decoders accept: gzip or zlib data for `gzip`, xz or
//! lzma-alone data for `xz`; concatenated members/frames are all decoded. Truncated or corrupt
//! data is an error, never a short success.

use std::fmt;
use std::pin::Pin;

use async_compression::tokio::bufread;
use async_compression::tokio::write;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};

/// A supported content encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Gzip,
    Xz,
    Bz2,
    Zstd,
}

impl Encoding {
    pub const ALL: [Encoding; 4] = [Encoding::Gzip, Encoding::Xz, Encoding::Bz2, Encoding::Zstd];

    /// Parses an encoding name (exact lowercase, as on the wire; case-insensitive for CLIs).
    pub fn parse(s: &str) -> Option<Encoding> {
        match s.to_ascii_lowercase().as_str() {
            "gzip" => Some(Encoding::Gzip),
            "xz" => Some(Encoding::Xz),
            "bz2" => Some(Encoding::Bz2),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Xz => "xz",
            Encoding::Bz2 => "bz2",
            Encoding::Zstd => "zstd",
        }
    }

    /// The encoding whose magic bytes start `data` (upstream's signature table).
    pub fn from_magic(data: &[u8]) -> Option<Encoding> {
        if data.starts_with(&[0x1f, 0x8b, 0x08]) {
            Some(Encoding::Gzip)
        } else if data.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            Some(Encoding::Xz)
        } else if data.starts_with(b"BZh") {
            Some(Encoding::Bz2)
        } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Encoding::Zstd)
        } else {
            None
        }
    }

    /// The encoding a file name suggests (`.gz`, `.xz`, `.bz2`, `.zst`).
    pub fn from_file_name(name: &str) -> Option<Encoding> {
        let lower = name.to_ascii_lowercase();
        [
            (".gz", Encoding::Gzip),
            (".tgz", Encoding::Gzip),
            (".xz", Encoding::Xz),
            (".bz2", Encoding::Bz2),
            (".zst", Encoding::Zstd),
            (".zstd", Encoding::Zstd),
        ]
        .into_iter()
        .find(|(ext, _)| lower.ends_with(ext))
        .map(|(_, e)| e)
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed reader.
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed writer.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// Wraps `inner` so that reading yields the decoded bytes. The format is chosen on the first
/// read (gzip vs zlib, xz vs lzma-alone, from the first bytes), so creating a decoder never
/// waits for data. Input that ends before its first byte decodes to nothing, as upstream's
/// decompressors do; input that ends anywhere else before its end is an error.
pub fn decoder<R>(encoding: Encoding, inner: R) -> BoxRead
where
    R: AsyncRead + Send + Unpin + 'static,
{
    Box::pin(LazyDecoder {
        encoding,
        state: DecoderState::Peeking(Some(BufReader::with_capacity(256 * 1024, inner))),
    })
}

struct LazyDecoder<R> {
    encoding: Encoding,
    state: DecoderState<R>,
}

enum DecoderState<R> {
    Peeking(Option<BufReader<R>>),
    Decoding(BoxRead),
    Empty,
}

fn start_decoder<R>(encoding: Encoding, head: &[u8], buffered: BufReader<R>) -> BoxRead
where
    R: AsyncRead + Send + Unpin + 'static,
{
    match encoding {
        Encoding::Gzip if !head.starts_with(&[0x1f, 0x8b]) => {
            let mut d = bufread::ZlibDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Gzip => {
            let mut d = bufread::GzipDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Xz if Encoding::from_magic(head) != Some(Encoding::Xz) => {
            Box::pin(bufread::LzmaDecoder::new(buffered))
        }
        Encoding::Xz => {
            let mut d = bufread::XzDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Bz2 => {
            let mut d = bufread::BzDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
        Encoding::Zstd => {
            let mut d = bufread::ZstdDecoder::new(buffered);
            d.multiple_members(true);
            Box::pin(d)
        }
    }
}

impl<R: AsyncRead + Send + Unpin + 'static> AsyncRead for LazyDecoder<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use tokio::io::AsyncBufRead;
        let this = &mut *self;
        if let DecoderState::Peeking(inner) = &mut this.state {
            let Some(reader) = inner.as_mut() else {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            };
            let head = std::task::ready!(Pin::new(reader).poll_fill_buf(cx))?.to_vec();
            let reader = inner.take().expect("present above");
            this.state = if head.is_empty() {
                DecoderState::Empty
            } else {
                DecoderState::Decoding(start_decoder(this.encoding, &head, reader))
            };
        }
        match &mut this.state {
            DecoderState::Decoding(d) => d.as_mut().poll_read(cx, buf),
            DecoderState::Empty => std::task::Poll::Ready(Ok(())),
            DecoderState::Peeking(_) => unreachable!("decided above"),
        }
    }
}

/// Wraps `inner` so that written bytes are encoded; `shutdown` writes the trailer and then
/// shuts `inner` down.
pub fn encoder<'a, W>(encoding: Encoding, inner: W) -> Pin<Box<dyn AsyncWrite + Send + 'a>>
where
    W: AsyncWrite + Send + 'a,
{
    match encoding {
        Encoding::Gzip => Box::pin(write::GzipEncoder::new(inner)),
        Encoding::Xz => Box::pin(write::XzEncoder::new(inner)),
        Encoding::Bz2 => Box::pin(write::BzEncoder::new(inner)),
        Encoding::Zstd => Box::pin(write::ZstdEncoder::new(inner)),
    }
}

/// An encoder that starts only when the first byte is written: shutting down a writer that
/// never wrote ends the inner writer without emitting an empty compressed stream.
pub struct LazyEncoder<W> {
    encoding: Encoding,
    state: LazyState<W>,
}

enum LazyState<W> {
    Idle(Option<W>),
    Encoding(Pin<Box<dyn AsyncWrite + Send>>),
}

impl<W> LazyEncoder<W> {
    pub fn new(encoding: Encoding, inner: W) -> Self {
        LazyEncoder {
            encoding,
            state: LazyState::Idle(Some(inner)),
        }
    }
}

impl<W: AsyncWrite + Send + Unpin + 'static> AsyncWrite for LazyEncoder<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if let LazyState::Idle(inner) = &mut this.state {
            let Some(inner) = inner.take() else {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            };
            this.state = LazyState::Encoding(encoder(this.encoding, inner));
        }
        match &mut this.state {
            LazyState::Encoding(e) => e.as_mut().poll_write(cx, buf),
            LazyState::Idle(_) => unreachable!("started above"),
        }
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.state {
            LazyState::Encoding(e) => e.as_mut().poll_flush(cx),
            LazyState::Idle(Some(inner)) => Pin::new(inner).poll_flush(cx),
            LazyState::Idle(None) => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.state {
            LazyState::Encoding(e) => e.as_mut().poll_shutdown(cx),
            LazyState::Idle(Some(inner)) => Pin::new(inner).poll_shutdown(cx),
            LazyState::Idle(None) => std::task::Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn encode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = encoder(encoding, &mut out);
            w.write_all(data).await.unwrap();
            w.shutdown().await.unwrap();
        }
        out
    }

    async fn decode(encoding: Encoding, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        let mut r = decoder(encoding, std::io::Cursor::new(data));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[tokio::test]
    async fn every_encoding_round_trips() {
        let data = sample();
        for e in Encoding::ALL {
            let enc = encode(e, &data).await;
            assert_eq!(Encoding::from_magic(&enc), Some(e), "{e}");
            assert!(enc.len() < data.len(), "{e} compresses");
            assert_eq!(decode(e, enc).await.unwrap(), data, "{e}");
        }
    }

    #[tokio::test]
    async fn concatenated_members_are_all_decoded() {
        for e in Encoding::ALL {
            let mut two = encode(e, b"first ").await;
            two.extend(encode(e, b"second").await);
            assert_eq!(decode(e, two).await.unwrap(), b"first second", "{e}");
        }
    }

    #[tokio::test]
    async fn truncated_or_corrupt_data_is_an_error() {
        let data = sample();
        for e in Encoding::ALL {
            let enc = encode(e, &data).await;
            let truncated = enc[..enc.len() / 2].to_vec();
            assert!(decode(e, truncated).await.is_err(), "truncated {e}");
            let mut corrupt = enc.clone();
            let mid = corrupt.len() / 2;
            for b in &mut corrupt[mid..mid + 16] {
                *b ^= 0x5a;
            }
            assert!(decode(e, corrupt).await.is_err(), "corrupt {e}");
            assert!(
                decode(e, b"definitely not compressed".to_vec())
                    .await
                    .is_err(),
                "garbage {e}"
            );
        }
    }

    #[tokio::test]
    async fn gzip_also_reads_zlib_like_upstream() {
        let mut zlib = Vec::new();
        {
            let mut w = write::ZlibEncoder::new(&mut zlib);
            w.write_all(b"zlib data").await.unwrap();
            w.shutdown().await.unwrap();
        }
        assert_eq!(decode(Encoding::Gzip, zlib).await.unwrap(), b"zlib data");
    }

    #[test]
    fn names_and_extensions() {
        assert_eq!(Encoding::parse("ZSTD"), Some(Encoding::Zstd));
        assert_eq!(Encoding::parse("lz4"), None);
        assert_eq!(Encoding::from_file_name("image.raw.xz"), Some(Encoding::Xz));
        assert_eq!(
            Encoding::from_file_name("disk.img.ZST"),
            Some(Encoding::Zstd)
        );
        assert_eq!(Encoding::from_file_name("disk.img"), None);
    }
}

//! Layer compression: which one a blob uses (from its first bytes, as Docker and containerd
//! decide, since media types lie often enough), a streaming decoder, and an encoder for
//! committing a diff.

use std::io::{self, BufRead, Read, Write};

/// The compressions a layer may use. OCI allows gzip, zstd and none; Docker's old xz and bzip2
/// layers are recognised only to be refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A compression that [`Compression::detect`] recognises but Berth does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} compression is not supported (only gzip, zstd or none)")]
pub struct UnsupportedCompression(pub &'static str);

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// How many leading bytes [`Compression::detect`] wants to see.
pub const MAGIC_LEN: usize = 6;

impl Compression {
    /// The compression of a blob that starts with `prefix` (give it [`MAGIC_LEN`] bytes, or
    /// the whole blob when shorter). Anything without a known magic is taken as a plain tar,
    /// whose first bytes are a file name.
    pub fn detect(prefix: &[u8]) -> Result<Compression, UnsupportedCompression> {
        if prefix.starts_with(GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if prefix.starts_with(ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if prefix.starts_with(XZ_MAGIC) {
            Err(UnsupportedCompression("xz"))
        } else if prefix.starts_with(BZIP2_MAGIC) {
            Err(UnsupportedCompression("bzip2"))
        } else {
            Ok(Compression::None)
        }
    }

    /// The suffix OCI media types use for it (`+gzip`, `+zstd`, or none).
    pub fn media_type_suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "+gzip",
            Compression::Zstd => "+zstd",
        }
    }

    /// A reader of the decompressed stream. Concatenated gzip members and zstd frames are
    /// read through, as Go's readers do.
    pub fn decoder<'a, R: BufRead + 'a>(self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        })
    }

    /// A writer that compresses into `out` at the usual default level (gzip 6, zstd 3).
    /// Call [`CompressWriter::finish`] to write the trailer.
    pub fn writer<W: Write>(self, out: W) -> io::Result<CompressWriter<W>> {
        Ok(CompressWriter(match self {
            Compression::None => Inner::None(out),
            // No name and mtime 0 in the gzip header, so the same tar compresses to the same
            // blob and a rebuilt layer keeps its digest.
            Compression::Gzip => {
                Inner::Gzip(flate2::GzBuilder::new().write(out, flate2::Compression::default()))
            }
            Compression::Zstd => Inner::Zstd(zstd::stream::write::Encoder::new(
                out,
                zstd::DEFAULT_COMPRESSION_LEVEL,
            )?),
        }))
    }
}

/// Splits the first bytes off `input` to detect its compression, and returns the
/// decompressed stream (the bytes read for detection are put back in front).
pub fn detect_and_decode<'a, R: Read + 'a>(
    mut input: R,
    buffer: usize,
) -> io::Result<(
    Result<Compression, UnsupportedCompression>,
    Box<dyn Read + 'a>,
)> {
    let mut magic = Vec::with_capacity(MAGIC_LEN);
    // A network reader may hand out a byte at a time; keep reading until the magic is there
    // or the stream ends.
    while magic.len() < MAGIC_LEN {
        let mut byte = [0u8; MAGIC_LEN];
        let want = MAGIC_LEN - magic.len();
        match input.read(&mut byte[..want]) {
            Ok(0) => break,
            Ok(n) => magic.extend_from_slice(&byte[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let detected = Compression::detect(&magic);
    let joined = io::BufReader::with_capacity(buffer, io::Cursor::new(magic).chain(input));
    let decoder = match detected {
        Ok(c) => c.decoder(joined)?,
        Err(_) => Box::new(joined),
    };
    Ok((detected, decoder))
}

/// A compressing writer from [`Compression::writer`].
pub struct CompressWriter<W: Write>(Inner<W>);

enum Inner<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> CompressWriter<W> {
    /// Writes the compression trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Inner::None(w) => Ok(w),
            Inner::Gzip(w) => w.finish(),
            Inner::Zstd(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(w) => w.write(buf),
            Inner::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::None(w) => w.flush(),
            Inner::Gzip(w) => w.flush(),
            Inner::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_magic_bytes() {
        assert_eq!(
            Compression::detect(b"\x1f\x8b\x08\0"),
            Ok(Compression::Gzip)
        );
        assert_eq!(
            Compression::detect(b"\x28\xb5\x2f\xfd\0\0"),
            Ok(Compression::Zstd)
        );
        assert_eq!(Compression::detect(b"bin/\0\0"), Ok(Compression::None));
        assert_eq!(Compression::detect(b""), Ok(Compression::None));
        assert_eq!(
            Compression::detect(b"\xfd7zXZ\0"),
            Err(UnsupportedCompression("xz"))
        );
        assert_eq!(
            Compression::detect(b"BZh91AY"),
            Err(UnsupportedCompression("bzip2"))
        );
    }

    #[test]
    fn writer_and_decoder_round_trip() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut w = c.writer(Vec::new()).unwrap();
            w.write_all(&data).unwrap();
            let blob = w.finish().unwrap();
            // One byte at a time, as a slow network would hand it out.
            struct Trickle<'a>(&'a [u8]);
            impl Read for Trickle<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.len().min(buf.len()).min(1);
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let (detected, mut r) = detect_and_decode(Trickle(&blob), 4096).unwrap();
            assert_eq!(detected, Ok(c));
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c:?}");
        }
    }
}

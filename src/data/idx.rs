//! IDX, the format MNIST ships in: a big-endian header (magic, then one u32 per dimension)
//! followed by the raw u8 values. Files may be gzipped; both forms are read here.
//!
//! Every fault is an [`IdxError`] naming the file. Sizes claimed by a header are checked against
//! the bytes actually present before anything of that size is allocated.

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of u8 values with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of u8 values with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// MNIST images are 28×28.
pub const SIDE: usize = 28;
/// Pixels in one flattened image.
pub const PIXELS: usize = SIDE * SIDE;
/// Digits 0–9.
pub const CLASSES: usize = 10;

/// What an IDX file holds, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxKind {
    Images,
    Labels,
}

impl IdxKind {
    fn magic(self) -> u32 {
        match self {
            IdxKind::Images => IMAGES_MAGIC,
            IdxKind::Labels => LABELS_MAGIC,
        }
    }

    fn header_len(self) -> usize {
        match self {
            IdxKind::Images => 16,
            IdxKind::Labels => 8,
        }
    }

    fn item_len(self) -> usize {
        match self {
            IdxKind::Images => PIXELS,
            IdxKind::Labels => 1,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            IdxKind::Images => "images",
            IdxKind::Labels => "labels",
        }
    }
}

/// A fault in an IDX file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: is a directory, expected an IDX file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not valid gzip data: {source}", path.display())]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: gzip data ends early: the file is truncated", path.display())]
    GzipTruncated { path: PathBuf },
    #[error("{}: truncated header: {found} bytes, an IDX {} header has {expected}", path.display(), kind.noun())]
    TruncatedHeader {
        path: PathBuf,
        kind: IdxKind,
        found: usize,
        expected: usize,
    },
    #[error("{}: not an IDX {} file: magic number {found:#010x}, expected {expected:#010x}{}", path.display(), kind.noun(), magic_hint(*found))]
    Magic {
        path: PathBuf,
        kind: IdxKind,
        found: u32,
        expected: u32,
    },
    #[error("{}: images are {rows}×{cols}, MNIST images are 28×28", path.display())]
    Dimensions { path: PathBuf, rows: u32, cols: u32 },
    #[error("{}: header says {claimed} {}, file holds {found}", path.display(), kind.noun())]
    Truncated {
        path: PathBuf,
        kind: IdxKind,
        claimed: u64,
        found: u64,
    },
    #[error("{}: file goes on past the {claimed} {} its header announces ({} more)", path.display(), kind.noun(), byte_count(*extra))]
    TrailingBytes {
        path: PathBuf,
        kind: IdxKind,
        claimed: u64,
        /// Extra bytes seen, up to [`TRAILING_LIMIT`].
        extra: u64,
    },
    #[error("{}: label {label} at index {index} is not a digit 0-9", path.display())]
    Label {
        path: PathBuf,
        index: usize,
        label: u8,
    },
}

/// How much more of a gzip stream is decoded, after a fault in what it holds, to tell whether
/// the stream itself is corrupt.
const GZIP_CHECK_LIMIT: u64 = 256 << 20;

/// How far past the announced end a file is read to report how much is left over.
pub const TRAILING_LIMIT: u64 = 1 << 20;

/// Names the other IDX kind when a file is of that kind (images and labels swapped).
fn magic_hint(found: u32) -> &'static str {
    match found {
        IMAGES_MAGIC => " (that of IDX images)",
        LABELS_MAGIC => " (that of IDX labels)",
        _ => "",
    }
}

fn byte_count(n: u64) -> String {
    match n {
        1 => "1 byte".to_string(),
        n if n >= TRAILING_LIMIT => "1 MiB or more".to_string(),
        n => format!("{n} bytes"),
    }
}

impl IdxError {
    /// A fault in the file the user supplied (format, permissions), as opposed to the machine
    /// failing to read it (an I/O error of the disk).
    pub fn is_bad_input(&self) -> bool {
        match self {
            IdxError::Read { source, .. } => is_about_the_file(source),
            _ => true,
        }
    }
}

/// The contents of one IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxData {
    /// Number of items (images or labels).
    pub count: usize,
    /// The values after the header: `count × 784` pixels or `count` labels.
    pub values: Vec<u8>,
    /// SHA-256 of the uncompressed file (header and values), as lowercase hex.
    pub sha256: String,
}

/// Reads an IDX images file (raw or gzipped) from disk.
pub fn read_images(path: &Path) -> Result<IdxData, IdxError> {
    read_file(path, IdxKind::Images)
}

/// Reads an IDX labels file (raw or gzipped) from disk.
pub fn read_labels(path: &Path) -> Result<IdxData, IdxError> {
    read_file(path, IdxKind::Labels)
}

fn read_file(path: &Path, kind: IdxKind) -> Result<IdxData, IdxError> {
    let read_error = |source| IdxError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if metadata.is_dir() {
        return Err(IdxError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(read_error)?;
    parse(BufReader::new(file), path, kind, Some(metadata.len()))
}

/// Parses IDX data of `kind` from `reader`; `path` is only used in messages. Gzip is detected
/// by its magic bytes. `size_hint` is the on-disk size, used to size the buffer.
pub fn parse(
    mut reader: impl BufRead,
    path: &Path,
    kind: IdxKind,
    size_hint: Option<u64>,
) -> Result<IdxData, IdxError> {
    let start = reader.fill_buf().map_err(|source| IdxError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if start.is_empty() {
        return Err(IdxError::Empty {
            path: path.to_path_buf(),
        });
    }
    if start.starts_with(&[0x1f, 0x8b]) {
        let mut decoder = GzDecoder::new(reader);
        parse_raw(&mut decoder, path, kind, None, true).map_err(|error| match error {
            IdxError::Gzip { .. } | IdxError::GzipTruncated { .. } => error,
            // A corrupt stream can decode to a wrong header or labels before its checksum is
            // reached: the corruption is the fault to report. Draining is bounded, so that a
            // stream that inflates without end cannot keep the check going.
            idx_error => match std::io::copy(
                &mut (&mut decoder).take(GZIP_CHECK_LIMIT),
                &mut std::io::sink(),
            ) {
                Err(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
                    IdxError::GzipTruncated {
                        path: path.to_path_buf(),
                    }
                }
                Err(source) => IdxError::Gzip {
                    path: path.to_path_buf(),
                    source,
                },
                Ok(_) => idx_error,
            },
        })
    } else {
        parse_raw(reader, path, kind, size_hint, false)
    }
}

fn parse_raw(
    mut reader: impl Read,
    path: &Path,
    kind: IdxKind,
    size_hint: Option<u64>,
    gzipped: bool,
) -> Result<IdxData, IdxError> {
    let (header, count) = read_header(&mut reader, path, kind, gzipped)?;
    let values = read_items(reader, path, kind, count, size_hint, gzipped)?;
    if kind == IdxKind::Labels
        && let Some(index) = values.iter().position(|&label| label as usize >= CLASSES)
    {
        return Err(IdxError::Label {
            path: path.to_path_buf(),
            index,
            label: values[index],
        });
    }
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(&values);
    Ok(IdxData {
        count: count as usize,
        values,
        sha256: hex(&hasher.finalize()),
    })
}

/// A failed read, said as what it means: inside a gzip stream, the compressed file is at fault.
fn io_error(path: &Path, gzipped: bool, source: std::io::Error) -> IdxError {
    let path = path.to_path_buf();
    if gzipped && source.kind() == std::io::ErrorKind::UnexpectedEof {
        IdxError::GzipTruncated { path }
    } else if gzipped {
        IdxError::Gzip { path, source }
    } else {
        IdxError::Read { path, source }
    }
}

/// The header's bytes (what the checksum starts with) and the item count it claims, once its
/// magic number and, for images, its 28×28 are checked.
fn read_header(
    reader: &mut impl Read,
    path: &Path,
    kind: IdxKind,
    gzipped: bool,
) -> Result<(Vec<u8>, u64), IdxError> {
    let header_len = kind.header_len();
    let mut header = vec![0u8; header_len];
    let found = read_up_to(reader, &mut header).map_err(|e| io_error(path, gzipped, e))?;
    if found == 0 && !gzipped {
        return Err(IdxError::Empty {
            path: path.to_path_buf(),
        });
    }
    if found < header_len {
        return Err(IdxError::TruncatedHeader {
            path: path.to_path_buf(),
            kind,
            found,
            expected: header_len,
        });
    }
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let magic = word(0);
    if magic != kind.magic() {
        return Err(IdxError::Magic {
            path: path.to_path_buf(),
            kind,
            found: magic,
            expected: kind.magic(),
        });
    }
    let count = u64::from(word(4));
    if kind == IdxKind::Images {
        let (rows, cols) = (word(8), word(12));
        if rows as usize != SIDE || cols as usize != SIDE {
            return Err(IdxError::Dimensions {
                path: path.to_path_buf(),
                rows,
                cols,
            });
        }
    }
    Ok((header, count))
}

/// The `count` items the header claims, and nothing after them.
fn read_items(
    mut reader: impl Read,
    path: &Path,
    kind: IdxKind,
    count: u64,
    size_hint: Option<u64>,
    gzipped: bool,
) -> Result<Vec<u8>, IdxError> {
    // The header's claim is only trusted as an upper bound on what is read: the buffer grows
    // with the bytes that really arrive, so a header claiming 2^31 images allocates nothing.
    let item_len = kind.item_len() as u64;
    let expected = count * item_len;
    let mut values = Vec::new();
    if let Some(size) = size_hint {
        values.reserve(expected.min(size) as usize);
    }
    reader
        .by_ref()
        .take(expected)
        .read_to_end(&mut values)
        .map_err(|e| io_error(path, gzipped, e))?;
    if (values.len() as u64) < expected {
        return Err(IdxError::Truncated {
            path: path.to_path_buf(),
            kind,
            claimed: count,
            found: values.len() as u64 / item_len,
        });
    }
    let mut rest = Vec::new();
    reader
        .take(TRAILING_LIMIT)
        .read_to_end(&mut rest)
        .map_err(|e| io_error(path, gzipped, e))?;
    if !rest.is_empty() {
        return Err(IdxError::TrailingBytes {
            path: path.to_path_buf(),
            kind,
            claimed: count,
            extra: rest.len() as u64,
        });
    }
    Ok(values)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether an I/O error says something about the file named (it is missing, unreadable, not a
/// file) rather than about the machine.
pub fn is_about_the_file(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        NotFound | PermissionDenied | IsADirectory | NotADirectory | InvalidInput | InvalidData
    )
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builders of IDX bytes, for the tests and the fuzz targets (a separate crate, which is why this
/// is public); not part of the documented API.
#[doc(hidden)]
pub mod encode {
    use super::{IMAGES_MAGIC, LABELS_MAGIC, SIDE};

    /// An IDX images file holding `pixels` (a multiple of 784 bytes).
    pub fn images(pixels: &[u8]) -> Vec<u8> {
        let count = (pixels.len() / (SIDE * SIDE)) as u32;
        let mut bytes = Vec::with_capacity(16 + pixels.len());
        for word in [IMAGES_MAGIC, count, SIDE as u32, SIDE as u32] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    /// An IDX labels file holding `labels`.
    pub fn labels(labels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + labels.len());
        for word in [LABELS_MAGIC, labels.len() as u32] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes.extend_from_slice(labels);
        bytes
    }

    /// `bytes` gzipped.
    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        encoder.write_all(bytes).expect("writing to a Vec");
        encoder.finish().expect("writing to a Vec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_bytes(bytes: &[u8], kind: IdxKind) -> Result<IdxData, IdxError> {
        parse(bytes, Path::new("test.idx"), kind, Some(bytes.len() as u64))
    }

    fn sample_pixels(count: usize) -> Vec<u8> {
        (0..count * PIXELS).map(|i| (i % 256) as u8).collect()
    }

    #[test]
    fn reads_raw_and_gzipped_images_alike() {
        let pixels = sample_pixels(3);
        let raw = encode::images(&pixels);
        let from_raw = parse_bytes(&raw, IdxKind::Images).unwrap();
        let from_gz = parse_bytes(&encode::gzip(&raw), IdxKind::Images).unwrap();
        assert_eq!(from_raw.count, 3);
        assert_eq!(from_raw.values, pixels);
        assert_eq!(from_raw, from_gz);
        // The checksum is of the uncompressed file, header included.
        assert_eq!(from_raw.sha256, hex(&Sha256::digest(&raw)));
    }

    #[test]
    fn reads_labels() {
        let data = parse_bytes(&encode::labels(&[7, 2, 1, 0, 9]), IdxKind::Labels).unwrap();
        assert_eq!(data.count, 5);
        assert_eq!(data.values, vec![7, 2, 1, 0, 9]);
    }

    #[test]
    fn rejects_wrong_magic() {
        let err = parse_bytes(&encode::labels(&[1]), IdxKind::Images).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: truncated header: 9 bytes, an IDX images header has 16"
        );
        let err = parse_bytes(&encode::images(&sample_pixels(1)), IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: not an IDX labels file: magic number 0x00000803, expected 0x00000801 (that of IDX images)"
        );
    }

    #[test]
    fn rejects_other_sizes_than_28_by_28() {
        let mut bytes = encode::images(&sample_pixels(1));
        bytes[11] = 32;
        let err = parse_bytes(&bytes, IdxKind::Images).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: images are 32×28, MNIST images are 28×28"
        );
    }

    #[test]
    fn rejects_a_body_shorter_than_the_header_claims() {
        let bytes = encode::images(&sample_pixels(3));
        let err = parse_bytes(&bytes[..16 + 2 * PIXELS + 5], IdxKind::Images).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: header says 3 images, file holds 2"
        );
    }

    #[test]
    fn a_huge_claimed_count_is_checked_against_the_bytes_present() {
        let mut bytes = encode::images(&sample_pixels(1));
        bytes[4..8].copy_from_slice(&(1u32 << 31).to_be_bytes());
        let err = parse_bytes(&bytes, IdxKind::Images).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: header says 2147483648 images, file holds 1"
        );
    }

    #[test]
    fn rejects_trailing_bytes_and_labels_above_nine() {
        let mut bytes = encode::labels(&[1, 2]);
        bytes.push(3);
        let err = parse_bytes(&bytes, IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: file goes on past the 2 labels its header announces (1 byte more)"
        );
        let err = parse_bytes(&encode::labels(&[1, 10, 2]), IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: label 10 at index 1 is not a digit 0-9"
        );
    }

    #[test]
    fn rejects_empty_and_corrupt_gzip() {
        let err = parse_bytes(&[], IdxKind::Labels).unwrap_err();
        assert_eq!(err.to_string(), "test.idx: file is empty");
        let gz = encode::gzip(&encode::labels(&[1, 2, 3]));
        let err = parse_bytes(&gz[..gz.len() / 2], IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: gzip data ends early: the file is truncated"
        );
        // A reserved deflate block type.
        let mut corrupt = gz.clone();
        corrupt[10] |= 0b110;
        let err = parse_bytes(&corrupt, IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: not valid gzip data: corrupt deflate stream"
        );
        // A flipped bit that decodes to another count: the checksum, checked on, tells.
        let mut corrupt = gz.clone();
        corrupt[15] ^= 0x55;
        let err = parse_bytes(&corrupt, IdxKind::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.idx: not valid gzip data: corrupt gzip stream does not have a matching checksum"
        );
    }
}

//! TensorFlow's record framing, which TensorBoard's event files are written in: each record is
//! its length (u64, little-endian), the masked CRC-32C of those 8 bytes, the data, and the
//! masked CRC-32C of the data (`tensorflow/core/lib/io/record_writer.cc`).

/// The CRC-32C of `bytes`, masked as TensorFlow masks the CRCs it stores (a CRC of data that
/// holds CRCs is then not trivially related to them).
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// `data` as one framed record.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc(data).to_le_bytes());
    record
}

/// Why the bytes after the last good record are not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the record says it has: a writer killed mid-record, or one still writing.
    #[error("a record is cut short at byte {at}")]
    Truncated { at: usize },
    #[error("the {which} CRC of the record at byte {at} does not match")]
    Crc { at: usize, which: &'static str },
}

/// The records of `bytes`, in order, up to the first that is cut short or corrupt (TensorBoard
/// too reads a file up to there), and why it stopped when it did before the end.
pub fn records(bytes: &[u8]) -> (Vec<&[u8]>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((data, next)) => {
                out.push(data);
                at = next;
            }
            Err(error) => return (out, Some(error)),
        }
    }
    (out, None)
}

fn record_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), FrameError> {
    let truncated = FrameError::Truncated { at };
    let header = bytes.get(at..at + 12).ok_or(truncated.clone())?;
    let (length, crc) = header.split_at(8);
    if masked_crc(length).to_le_bytes() != crc {
        return Err(FrameError::Crc {
            at,
            which: "length",
        });
    }
    let length = u64::from_le_bytes(length.try_into().unwrap_or([0; 8]));
    let length = usize::try_from(length).map_err(|_| truncated.clone())?;
    let end = (at + 12).checked_add(length).ok_or(truncated.clone())?;
    let data = bytes.get(at + 12..end).ok_or(truncated.clone())?;
    let crc = bytes.get(end..end + 4).ok_or(truncated)?;
    if masked_crc(data).to_le_bytes() != crc {
        return Err(FrameError::Crc { at, which: "data" });
    }
    Ok((data, end + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by TensorBoard's own `EventFileWriter` (tensorboard 2.21.0), by
    /// scripts/make_tensorboard_fixture.py: a `file_version` event, a scalar and an HParams
    /// session start.
    pub(crate) const FIXTURE: &[u8] =
        include_bytes!("../../../tests/fixtures/tensorboard/events.bin");

    #[test]
    fn tensorboards_own_records_frame_and_check_as_ours_do() {
        let (records, fault) = records(FIXTURE);
        assert_eq!(fault, None);
        assert_eq!(records.len(), 3, "file_version, scalar, session start");
        let mut at = 0;
        for data in &records {
            // The frame TensorBoard wrote around each record is byte for byte ours.
            let framed = frame(data);
            assert_eq!(&FIXTURE[at..at + framed.len()], &framed[..]);
            at += framed.len();
        }
        assert_eq!(at, FIXTURE.len());
        // The first record is the Event with file_version "brain.Event:2" (field 3).
        assert!(records[0].windows(13).any(|w| w == b"brain.Event:2"));
    }

    #[test]
    fn masked_crc_of_known_bytes() {
        // The length header of a 0-byte record and of TensorBoard's first record, as the
        // fixture holds them: the CRC-32C is masked, not plain.
        let (first, _) = records(FIXTURE);
        let length = (first[0].len() as u64).to_le_bytes();
        assert_eq!(&FIXTURE[8..12], &masked_crc(&length).to_le_bytes());
        assert_ne!(crc32c::crc32c(&length), masked_crc(&length));
        // CRC-32C's check value, "123456789" -> 0xe3069283, rotated right by 15 bits plus
        // 0xa282ead8 (TensorFlow's crc32c::Mask), worked out by hand.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn a_cut_or_corrupt_record_ends_the_reading_there() {
        let (records_all, _) = records(FIXTURE);
        let second = frame(records_all[0]).len();
        // Cut inside the second record: the first is still read.
        for cut in [second + 3, second + 12, FIXTURE.len() - 1] {
            let (read, fault) = records(&FIXTURE[..cut]);
            assert!(
                matches!(fault, Some(FrameError::Truncated { .. })),
                "{cut}: {fault:?}"
            );
            assert!(!read.is_empty() && read.len() < 3, "{cut}");
        }
        let mut corrupt = FIXTURE.to_vec();
        corrupt[second + 14] ^= 1;
        let (read, fault) = records(&corrupt);
        assert_eq!(read.len(), 1);
        assert_eq!(
            fault,
            Some(FrameError::Crc {
                at: second,
                which: "data"
            })
        );
        corrupt = FIXTURE.to_vec();
        corrupt[second + 2] ^= 1;
        assert_eq!(
            records(&corrupt).1,
            Some(FrameError::Crc {
                at: second,
                which: "length"
            })
        );
    }
}

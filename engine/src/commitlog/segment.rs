//! Byte layout of segment files: names, the header, record framing, and the few file
//! operations that must happen in a fixed order (create, then fsync the directory).
//!
//! This is the only file that knows offsets and sizes; the module docs of
//! [`crate::commitlog`] draw the same layout.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// First eight bytes of every segment.
pub(crate) const MAGIC: [u8; 8] = *b"TIDLOG01";
/// Layout version written after the magic; bumped on any incompatible change.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the segment header in bytes.
pub(crate) const HEADER_LEN: u64 = 24;
/// Bytes of framing in front of every payload: length and checksum.
pub(crate) const RECORD_OVERHEAD: u64 = 8;
/// File name extension of segment files.
pub(crate) const SEGMENT_EXT: &str = "tlog";
/// Name of the lock file that sits beside the segments.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Digits in a segment file name: enough for any `u64`, zero-padded so names sort by index.
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first entry is `first_index`.
pub(crate) fn file_name(first_index: u64) -> String {
    format!("{first_index:0NAME_DIGITS$}.{SEGMENT_EXT}")
}

/// The first entry index encoded in a segment file name, or `None` if it is not one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if stem.len() != NAME_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Twenty digits can exceed u64::MAX; such a name is not one this log writes.
    stem.parse().ok()
}

/// The header of the segment whose first entry is `first_index`.
pub(crate) fn encode_header(first_index: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Bytes 12..16 are reserved and stay zero.
    h[16..24].copy_from_slice(&first_index.to_le_bytes());
    h
}

/// Checks a segment's header against the index its file name claims.
///
/// Returns a description of the first problem found.
pub(crate) fn check_header(data: &[u8], first_index: u64) -> Result<(), String> {
    let Some(h) = data.get(..HEADER_LEN as usize) else {
        return Err(format!(
            "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
            data.len()
        ));
    };
    if h[0..8] != MAGIC {
        return Err("bad magic: not a tidings commit log segment".to_owned());
    }
    let version = u32::from_le_bytes(le4(&h[8..12]));
    if version != FORMAT_VERSION {
        return Err(format!(
            "unsupported format version {version} (this build reads {FORMAT_VERSION})"
        ));
    }
    let stored = u64::from_le_bytes(le8(&h[16..24]));
    if stored != first_index {
        return Err(format!(
            "header says the segment starts at entry {stored} but its name says {first_index}"
        ));
    }
    Ok(())
}

/// Appends the framed record for `payload` to `out`.
///
/// The caller guarantees `payload.len() <= u32::MAX`.
pub(crate) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The checksum stored in a record: over the length bytes too, so a torn or flipped length
/// cannot pass as a shorter valid record.
fn record_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// What sits at one offset of a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// A complete record whose checksum matches.
    Valid {
        /// The payload.
        payload: &'a [u8],
        /// Offset just past the record.
        next: usize,
    },
    /// The offset is exactly the end of the data.
    End,
    /// Something that is not a valid record; the text says why.
    Bad(String),
}

/// Reads the record starting at `offset` of `data` (a whole segment file).
pub(crate) fn read_record(data: &[u8], offset: usize) -> Record<'_> {
    let rest = data.get(offset..).unwrap_or_default();
    if rest.is_empty() {
        return Record::End;
    }
    let (Some(len_bytes), Some(crc_bytes)) = (rest.get(0..4), rest.get(4..8)) else {
        return Record::Bad(format!(
            "{} bytes left, too few for a record header",
            rest.len()
        ));
    };
    let len_bytes = le4(len_bytes);
    let len = u32::from_le_bytes(len_bytes) as usize;
    let Some(payload) = rest.get(8..).and_then(|p| p.get(..len)) else {
        return Record::Bad(format!(
            "record claims {len} payload bytes but only {} remain",
            rest.len() - 8
        ));
    };
    let stored = u32::from_le_bytes(le4(crc_bytes));
    let actual = record_crc(len_bytes, payload);
    if stored != actual {
        return Record::Bad(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    Record::Valid {
        payload,
        next: offset + 8 + len,
    }
}

/// The first offset at or after `from` where a complete, valid record starts.
///
/// Every byte offset is tried, not just the one a (possibly damaged) length points at, so a
/// flipped length field cannot hide the valid records behind it. The cost is a checksum per
/// candidate whose claimed length fits in the file; this runs only after a bad record has
/// been found.
pub(crate) fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&at| matches!(read_record(data, at), Record::Valid { .. }))
}

/// Creates the segment for `first_index` in `dir`, writes its header, and fsyncs `dir` so
/// the new name survives a crash.
///
/// Fails if the file already exists: an existing segment is never overwritten.
pub(crate) fn create(
    dir: &Path,
    first_index: u64,
) -> Result<(File, PathBuf), (PathBuf, io::Error)> {
    let path = dir.join(file_name(first_index));
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| (path.clone(), e))?;
    file.write_all(&encode_header(first_index))
        .map_err(|e| (path.clone(), e))?;
    sync_dir(dir).map_err(|e| (dir.to_owned(), e))?;
    Ok((file, path))
}

/// Fsyncs a directory, making creations, removals and renames in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Four bytes from a slice known to hold exactly four.
fn le4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    a
}

/// Eight bytes from a slice known to hold exactly eight.
fn le8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(file_name(42), "00000000000000000042.tlog");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.tlog"), None);
        assert_eq!(parse_file_name("99999999999999999999.tlog"), None);
        assert_eq!(parse_file_name("0000000000000000004x.tlog"), None);
        assert_eq!(parse_file_name("00000000000000000042.log"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn header_checks() {
        let h = encode_header(7);
        assert_eq!(check_header(&h, 7), Ok(()));
        assert!(check_header(&h, 8).is_err());
        assert!(check_header(&h[..23], 7).is_err());
        let mut bad = h;
        bad[8] = 2;
        assert!(check_header(&bad, 7).is_err());
    }

    #[test]
    fn records_round_trip_and_detect_damage() {
        let mut data = Vec::new();
        encode_record(b"hello", &mut data);
        encode_record(b"", &mut data);
        let Record::Valid { payload, next } = read_record(&data, 0) else {
            panic!("first record should be valid");
        };
        assert_eq!((payload, next), (&b"hello"[..], 13));
        assert_eq!(
            read_record(&data, 13),
            Record::Valid {
                payload: b"",
                next: 21
            }
        );
        assert_eq!(read_record(&data, 21), Record::End);
        for cut in 14..21 {
            assert!(matches!(read_record(&data[..cut], 13), Record::Bad(_)));
        }
        for i in 0..13 {
            let mut d = data.clone();
            d[i] ^= 0x40;
            assert!(matches!(read_record(&d, 0), Record::Bad(_)), "flip at {i}");
            assert_eq!(find_valid_record(&d, 1), Some(13), "flip at {i}");
        }
    }
}

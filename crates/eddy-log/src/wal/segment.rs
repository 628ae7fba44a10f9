//! On-disk format of a WAL segment (format version 1).
//!
//! ```text
//! segment file  {base_offset:020}.wal
//!   header (24 B): magic "EDDYWAL\0" | version u32 LE | flags u32 LE (0) | base_offset u64 LE
//!   record*      : len u32 LE | crc u32 LE | offset u64 LE | payload[len]
//!                  crc = CRC32C over (len LE bytes, offset LE bytes, payload)
//! ```
//! Offsets inside a segment are contiguous from `base_offset`. A record that is short, has a
//! bad CRC, an impossible length or a non-contiguous offset ends the valid part of the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::Offset;
use crate::error::{IoContext, Result};

pub(crate) const MAGIC: &[u8; 8] = b"EDDYWAL\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 24;
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// Largest payload accepted in one record.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn segment_path(dir: &Path, base: Offset) -> PathBuf {
    dir.join(format!("{base:020}.wal"))
}

pub(crate) fn parse_segment_name(name: &str) -> Option<Offset> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn encode_header(base: Offset) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    h
}

pub(crate) fn record_crc(len: u32, offset: Offset, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&len.to_le_bytes());
    let c = crc32c::crc32c_append(c, &offset.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

/// Appends one encoded record to `buf`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, offset: Offset, payload: &[u8]) {
    // Callers reject payloads above MAX_RECORD_BYTES (< u32::MAX) before they get here.
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, offset, payload).to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Decodes the record at the start of `buf`, expecting `expected` as its offset.
/// `Ok(None)` means `buf` is too short to hold the whole record.
pub(crate) fn decode_record(
    buf: &[u8],
    expected: Offset,
) -> Result<Option<(&[u8], usize)>, String> {
    if buf.len() < RECORD_HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut off = [0u8; 8];
    off.copy_from_slice(&buf[8..16]);
    let offset = u64::from_le_bytes(off);
    if len as usize > MAX_RECORD_BYTES {
        return Err(format!("record length {len} exceeds the maximum"));
    }
    let end = RECORD_HEADER_LEN + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let payload = &buf[RECORD_HEADER_LEN..end];
    if record_crc(len, offset, payload) != crc {
        return Err("checksum mismatch".into());
    }
    if offset != expected {
        return Err(format!("offset {offset} where {expected} was expected"));
    }
    Ok(Some((payload, end)))
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct ScanResult {
    /// Byte length of the valid prefix (header included).
    pub(crate) valid_len: u64,
    /// Offset after the last valid record.
    pub(crate) end_offset: Offset,
    /// Sparse index: (offset, byte position) of some records.
    pub(crate) index: Vec<(Offset, u64)>,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) damage: Option<String>,
    /// Length of the file on disk.
    pub(crate) file_len: u64,
}

/// Distance in bytes between sparse index entries.
pub(crate) const INDEX_EVERY: u64 = 256 * 1024;

/// Scans a segment, validating every record.
pub(crate) fn scan(path: &Path, base: Offset) -> Result<ScanResult> {
    let file = File::open(path).at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; HEADER_LEN as usize];
    let mut res = ScanResult {
        valid_len: 0,
        end_offset: base,
        index: Vec::new(),
        damage: None,
        file_len,
    };
    if let Err(e) = r.read_exact(&mut header) {
        res.damage = Some(format!("segment header unreadable: {e}"));
        return Ok(res);
    }
    if &header[..8] != MAGIC {
        res.damage = Some("bad segment magic".into());
        return Ok(res);
    }
    let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if version != FORMAT_VERSION {
        res.damage = Some(format!("unsupported segment format version {version}"));
        return Ok(res);
    }
    let mut hb = [0u8; 8];
    hb.copy_from_slice(&header[16..24]);
    if u64::from_le_bytes(hb) != base {
        res.damage = Some("segment header base offset does not match its file name".into());
        return Ok(res);
    }
    let mut pos = HEADER_LEN;
    let mut last_indexed: Option<u64> = None;
    let mut rec_header = [0u8; RECORD_HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        match read_full(&mut r, &mut rec_header) {
            Ok(0) => break,
            Ok(n) if n < RECORD_HEADER_LEN => {
                res.damage = Some(format!(
                    "torn record header ({n} of {RECORD_HEADER_LEN} bytes)"
                ));
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(e).at(path),
        }
        let len = u32::from_le_bytes([rec_header[0], rec_header[1], rec_header[2], rec_header[3]])
            as usize;
        if len > MAX_RECORD_BYTES {
            res.damage = Some(format!("record length {len} exceeds the maximum"));
            break;
        }
        payload.clear();
        payload.extend_from_slice(&rec_header);
        payload.resize(RECORD_HEADER_LEN + len, 0);
        let got = read_full(&mut r, &mut payload[RECORD_HEADER_LEN..]).at(path)?;
        if got < len {
            res.damage = Some(format!("torn record ({got} of {len} payload bytes)"));
            break;
        }
        match decode_record(&payload, res.end_offset) {
            Ok(Some((_, used))) => {
                if last_indexed.is_none_or(|p| pos - p >= INDEX_EVERY) {
                    res.index.push((res.end_offset, pos));
                    last_indexed = Some(pos);
                }
                pos += used as u64;
                res.end_offset += 1;
            }
            Ok(None) => {
                res.damage = Some("torn record".into());
                break;
            }
            Err(reason) => {
                res.damage = Some(reason);
                break;
            }
        }
    }
    res.valid_len = pos;
    Ok(res)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn record_roundtrip(offset in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut buf = Vec::new();
            encode_record(&mut buf, offset, &payload);
            let (p, used) = decode_record(&buf, offset).unwrap().unwrap();
            prop_assert_eq!(p, &payload[..]);
            prop_assert_eq!(used, buf.len());
            // Any strict prefix is "incomplete", never a wrong record.
            for cut in 0..buf.len() {
                prop_assert!(matches!(decode_record(&buf[..cut], offset), Ok(None) | Err(_)));
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..256), bit in any::<usize>()) {
            let mut buf = Vec::new();
            encode_record(&mut buf, 7, &payload);
            let i = bit % (buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            prop_assert!(!matches!(decode_record(&buf, 7), Ok(Some(_))));
        }
    }
}

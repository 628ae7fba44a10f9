//! Generated event ids: UUIDv7 (RFC 9562) whose 74 "random" bits are a per-process random node
//! (32 bits) followed by a per-process counter (42 bits used), RFC 9562 §6.2's "fixed
//! bit-length dedicated counter" method.
//!
//! Why not fully random bits: ids of one process then sort by time and share long prefixes,
//! which makes the stored `event_id` column compress several times better (Parquet's delta
//! byte-array encoding stores only the differing suffix), while ids stay unique: the counter
//! never repeats within a process, and two processes differ in their random node. Event ids
//! are identifiers, not secrets; nothing relies on them being unguessable.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static NODE: OnceLock<[u8; 4]> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new UUIDv7 for an event without a client-given id, at the current wall-clock time.
pub fn generate() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    generate_at(ms)
}

fn generate_at(unix_ms: u64) -> String {
    let node = NODE.get_or_init(|| {
        uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .unwrap_or([0; 4])
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut rand = [0u8; 10];
    // Bytes 0..4 of the random part: the node (the builder overwrites 4 bits with the version).
    rand[..4].copy_from_slice(node);
    // Bytes 4..10: the counter, big-endian, so later ids sort after earlier ones.
    rand[4..].copy_from_slice(&n.to_be_bytes()[2..]);
    uuid::Builder::from_unix_timestamp_millis(unix_ms, &rand)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_v7_unique_and_ordered() {
        let ids: Vec<String> = (0..10_000)
            .map(|_| generate_at(1_700_000_000_000))
            .collect();
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        for w in ids.windows(2) {
            assert!(w[0] < w[1], "{} !< {}", w[0], w[1]);
        }
        let u = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(
            secs * 1000 + u64::from(nanos) / 1_000_000,
            1_700_000_000_000
        );
        assert!(generate() > ids[0], "a later time sorts later");
    }
}

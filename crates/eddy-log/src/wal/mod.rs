//! The embedded write-ahead log: segment files in one directory, one writer thread doing
//! group commit, readers that see only fsynced records.
//!
//! Invariants:
//! - A ticket resolves `Ok` only after `fdatasync` returned for every byte of its records.
//! - Readers never see a record beyond the last fsync (`durable_len` per segment).
//! - Only the active (last) segment can have a torn tail: segments are rolled after a group's
//!   fsync, so a damaged sealed segment is real corruption and opening refuses to guess.
//! - After a failed write or fsync the log stops acknowledging (health `Failed`) until restart;
//!   restart's recovery decides from the bytes on disk what is durable.

mod segment;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::append_times::AppendTimes;
use crate::consumers::{Consumers, sync_dir};
use crate::error::IoContext;
use crate::{AppendTicket, ConsumerOffset, Error, Log, LogHealth, Offset, Record, Result};
pub use segment::MAX_RECORD_BYTES;
use segment::{HEADER_LEN, INDEX_EVERY, RECORD_HEADER_LEN};

/// Settings of the embedded WAL.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding segments, consumer offsets and the lock file.
    pub dir: PathBuf,
    /// A segment is rolled once it has grown past this many bytes.
    pub segment_bytes: u64,
    /// Bound of the append queue, in bytes (payload + record headers).
    pub max_queue_bytes: usize,
    /// At most this many bytes are written per group commit.
    pub max_group_bytes: usize,
}

impl WalConfig {
    /// Defaults for a directory: 64 MiB segments, 256 MiB queue, 16 MiB groups.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_queue_bytes: 256 << 20,
            max_group_bytes: 16 << 20,
        }
    }
}

/// What recovery found and did when the WAL was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Bytes cut from a torn or corrupt tail, with the reason.
    pub truncated: Option<(u64, String)>,
}

#[derive(Debug)]
struct SegState {
    index: Vec<(Offset, u64)>,
    durable_len: u64,
    end_offset: Offset,
    sealed: bool,
}

#[derive(Debug)]
struct Segment {
    base: Offset,
    path: PathBuf,
    file: File,
    state: RwLock<SegState>,
}

#[derive(Debug)]
struct Shared {
    segments: RwLock<BTreeMap<Offset, Arc<Segment>>>,
    end_tx: watch::Sender<Offset>,
    health: Mutex<LogHealth>,
    queued: AtomicUsize,
    fail_next_sync: AtomicBool,
    appended: AppendTimes,
}

#[derive(Debug)]
struct Request {
    records: Vec<Bytes>,
    bytes: usize,
    reply: oneshot::Sender<Result<Range<Offset>>>,
}

/// The embedded WAL. See the module docs for its invariants.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    _lock: File,
    shared: Arc<Shared>,
    tx: RwLock<Option<mpsc::UnboundedSender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    consumers: Mutex<Consumers>,
    max_queue_bytes: usize,
    report: RecoveryReport,
}

fn lock_poisoned() -> Error {
    Error::Unavailable("internal lock poisoned by a panic".into())
}

impl Wal {
    /// Opens (or creates) the WAL in `config.dir`, repairing a torn tail, and starts the writer.
    pub fn open(config: WalConfig) -> Result<Self> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).at(&lock_path),
        }

        let mut bases: Vec<Offset> = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            if let Some(base) = entry
                .file_name()
                .to_str()
                .and_then(segment::parse_segment_name)
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();

        let mut report = RecoveryReport {
            segments: bases.len(),
            ..Default::default()
        };
        let mut segments = BTreeMap::new();
        let mut expected_base: Option<Offset> = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment::segment_path(&dir, base);
            if let Some(exp) = expected_base
                && exp != base
            {
                return Err(Error::Corrupt {
                    path,
                    position: 0,
                    reason: format!("gap in the log: previous segment ends at offset {exp}"),
                });
            }
            let last = i + 1 == bases.len();
            let mut scan = segment::scan(&path, base)?;
            if let Some(reason) = scan.damage.clone() {
                if !last {
                    return Err(Error::Corrupt {
                        path,
                        position: scan.valid_len,
                        reason,
                    });
                }
                if scan.valid_len == 0 && scan.file_len > HEADER_LEN {
                    // The header itself is damaged but the file holds records: not a torn
                    // creation. Refuse rather than throw acknowledged records away.
                    return Err(Error::Corrupt {
                        path,
                        position: 0,
                        reason,
                    });
                }
                let cut = scan.file_len - scan.valid_len;
                tracing::warn!(segment = %path.display(), valid_bytes = scan.valid_len, cut_bytes = cut, %reason,
                    "WAL tail was torn or corrupt; cutting it back to the last good record");
                let f = OpenOptions::new().write(true).open(&path).at(&path)?;
                if scan.valid_len < HEADER_LEN {
                    f.set_len(0).at(&path)?;
                    f.write_all_at(&segment::encode_header(base), 0).at(&path)?;
                    scan.valid_len = HEADER_LEN;
                } else {
                    f.set_len(scan.valid_len).at(&path)?;
                }
                f.sync_all().at(&path)?;
                report.truncated = Some((cut, reason));
            }
            report.records += scan.end_offset - base;
            expected_base = Some(scan.end_offset);
            let file = File::open(&path).at(&path)?;
            segments.insert(
                base,
                Arc::new(Segment {
                    base,
                    path,
                    file,
                    state: RwLock::new(SegState {
                        index: scan.index,
                        durable_len: scan.valid_len,
                        end_offset: scan.end_offset,
                        sealed: !last,
                    }),
                }),
            );
        }
        if segments.is_empty() {
            let seg = create_segment(&dir, 0)?;
            segments.insert(0, seg);
            report.segments = 1;
        }
        let active = segments
            .values()
            .next_back()
            .cloned()
            .ok_or(Error::Closed)?;
        let (end, durable_len) = {
            let st = active.state.read().map_err(|_| lock_poisoned())?;
            (st.end_offset, st.durable_len)
        };
        let write_file = OpenOptions::new()
            .write(true)
            .open(&active.path)
            .at(&active.path)?;
        let (end_tx, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            segments: RwLock::new(segments),
            end_tx,
            health: Mutex::new(LogHealth::Ok),
            queued: AtomicUsize::new(0),
            fail_next_sync: AtomicBool::new(false),
            appended: AppendTimes::new(end, Instant::now()),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            shared: shared.clone(),
            dir: dir.clone(),
            file: write_file,
            seg: active,
            len: durable_len,
            next: end,
            last_indexed: 0,
            segment_bytes: config.segment_bytes.max(HEADER_LEN + 1),
            max_group_bytes: config.max_group_bytes.max(1),
            buf: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("eddy-wal-writer".into())
            .spawn(move || writer.run(rx))
            .at(&dir)?;
        let consumers = Consumers::load(&dir)?;
        tracing::info!(dir = %dir.display(), segments = report.segments, records = report.records, end_offset = end, "WAL opened");
        Ok(Self {
            dir,
            _lock: lock,
            shared,
            tx: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            consumers: Mutex::new(consumers),
            max_queue_bytes: config.max_queue_bytes,
            report,
        })
    }

    /// What recovery found when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The directory of this WAL.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Makes the next fsync fail, to test the failure path (fsync errors stop acknowledgements).
    #[doc(hidden)]
    pub fn inject_sync_failure(&self) {
        self.shared.fail_next_sync.store(true, Ordering::SeqCst);
    }

    fn delete_passed_segments(&self, min_next: Offset) -> Result<()> {
        let mut segs = self.shared.segments.write().map_err(|_| lock_poisoned())?;
        let mut doomed = Vec::new();
        for (base, seg) in segs.iter() {
            let st = seg.state.read().map_err(|_| lock_poisoned())?;
            if st.sealed && st.end_offset <= min_next {
                doomed.push(*base);
            } else {
                break;
            }
        }
        for base in &doomed {
            if let Some(seg) = segs.remove(base) {
                std::fs::remove_file(&seg.path).at(&seg.path)?;
                tracing::debug!(segment = %seg.path.display(), "deleted WAL segment passed by every consumer");
            }
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn create_segment(dir: &Path, base: Offset) -> Result<Arc<Segment>> {
    let path = segment::segment_path(dir, base);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .at(&path)?;
    f.write_all(&segment::encode_header(base)).at(&path)?;
    f.sync_all().at(&path)?;
    sync_dir(dir)?;
    let file = File::open(&path).at(&path)?;
    Ok(Arc::new(Segment {
        base,
        path,
        file,
        state: RwLock::new(SegState {
            index: Vec::new(),
            durable_len: HEADER_LEN,
            end_offset: base,
            sealed: false,
        }),
    }))
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    file: File,
    seg: Arc<Segment>,
    len: u64,
    next: Offset,
    last_indexed: u64,
    segment_bytes: u64,
    max_group_bytes: usize,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes;
            let mut group = vec![first];
            while bytes < self.max_group_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.bytes;
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, bytes);
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!(%reason, "WAL write failed; no further appends will be acknowledged until restart");
        if let Ok(mut h) = self.shared.health.lock() {
            *h = LogHealth::Failed(reason);
        }
    }

    fn failed(&self) -> Option<String> {
        match self.shared.health.lock().as_deref() {
            Ok(LogHealth::Failed(r)) => Some(r.clone()),
            Ok(_) => None,
            Err(_) => Some("lock poisoned".into()),
        }
    }

    fn commit_group(&mut self, group: Vec<Request>, bytes: usize) {
        let result = self.write_group(&group);
        self.shared.queued.fetch_sub(bytes, Ordering::SeqCst);
        metrics::gauge!("eddy_log_queue_bytes")
            .set(self.shared.queued.load(Ordering::Relaxed) as f64);
        match result {
            Ok(ranges) => {
                for (req, range) in group.into_iter().zip(ranges) {
                    let _ = req.reply.send(Ok(range));
                }
            }
            Err(reason) => {
                for req in group {
                    let _ = req.reply.send(Err(Error::Unavailable(reason.clone())));
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Request]) -> Result<Vec<Range<Offset>>, String> {
        if let Some(reason) = self.failed() {
            return Err(reason);
        }
        if self.len >= self.segment_bytes
            && self.next > self.seg.base
            && let Err(e) = self.roll()
        {
            let reason = format!("cannot roll segment: {e}");
            self.fail(reason.clone());
            return Err(reason);
        }
        self.buf.clear();
        let start = self.next;
        let mut next = start;
        let mut new_index = Vec::new();
        let mut ranges = Vec::with_capacity(group.len());
        for req in group {
            let first = next;
            for rec in &req.records {
                let pos = self.len + self.buf.len() as u64;
                if self.last_indexed == 0 || pos - self.last_indexed >= INDEX_EVERY {
                    new_index.push((next, pos));
                    self.last_indexed = pos;
                }
                segment::encode_record(&mut self.buf, next, rec);
                next += 1;
            }
            ranges.push(first..next);
        }
        let t = Instant::now();
        let io = self.file.write_all_at(&self.buf, self.len).and_then(|()| {
            if self.shared.fail_next_sync.swap(false, Ordering::SeqCst) {
                return Err(std::io::Error::other("injected fsync failure"));
            }
            self.file.sync_data()
        });
        metrics::histogram!("eddy_log_fsync_duration_seconds").record(t.elapsed().as_secs_f64());
        if let Err(e) = io {
            let reason = format!("write/fsync of {} failed: {e}", self.seg.path.display());
            self.fail(reason.clone());
            return Err(reason);
        }
        self.len += self.buf.len() as u64;
        self.next = next;
        if let Ok(mut st) = self.seg.state.write() {
            st.index.extend(new_index);
            st.durable_len = self.len;
            st.end_offset = next;
        }
        self.shared.appended.committed(next, Instant::now());
        self.shared.end_tx.send_replace(next);
        metrics::histogram!("eddy_log_group_commit_records").record((next - start) as f64);
        metrics::histogram!("eddy_log_group_commit_requests").record(group.len() as f64);
        metrics::counter!("eddy_log_written_bytes_total").increment(self.buf.len() as u64);
        metrics::gauge!("eddy_log_end_offset").set(next as f64);
        Ok(ranges)
    }

    fn roll(&mut self) -> Result<()> {
        let seg = create_segment(&self.dir, self.next)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .at(&seg.path)?;
        if let Ok(mut st) = self.seg.state.write() {
            st.sealed = true;
        }
        self.shared
            .segments
            .write()
            .map_err(|_| lock_poisoned())?
            .insert(seg.base, seg.clone());
        self.file = file;
        self.seg = seg;
        self.len = HEADER_LEN;
        self.last_indexed = 0;
        metrics::gauge!("eddy_log_segments").increment(1.0);
        Ok(())
    }
}

impl Log for Wal {
    fn append(&self, records: Vec<Bytes>) -> Result<AppendTicket> {
        if let Some(big) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(Error::RecordTooLarge {
                size: big.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        match self.health() {
            LogHealth::Ok => {}
            LogHealth::Failed(r) => return Err(Error::Unavailable(r)),
            LogHealth::Closed => return Err(Error::Closed),
        }
        let bytes: usize = records.iter().map(|r| r.len() + RECORD_HEADER_LEN).sum();
        let before = self.shared.queued.fetch_add(bytes, Ordering::SeqCst);
        // One oversized request may pass when the queue is empty, so a large batch is never
        // refused forever; otherwise the queue stays under its byte bound.
        if before > 0 && before + bytes > self.max_queue_bytes {
            self.shared.queued.fetch_sub(bytes, Ordering::SeqCst);
            return Err(Error::QueueFull {
                queued: before,
                limit: self.max_queue_bytes,
            });
        }
        let (reply, rx) = oneshot::channel();
        let guard = self.tx.read().map_err(|_| lock_poisoned())?;
        let sent = match guard.as_ref() {
            Some(tx) => tx
                .send(Request {
                    records,
                    bytes,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        if !sent {
            self.shared.queued.fetch_sub(bytes, Ordering::SeqCst);
            return Err(Error::Closed);
        }
        metrics::gauge!("eddy_log_queue_bytes")
            .set(self.shared.queued.load(Ordering::Relaxed) as f64);
        Ok(AppendTicket::new(rx))
    }

    fn read(&self, from: Offset, max_records: usize) -> Result<Vec<Record>> {
        let end = *self.shared.end_tx.borrow();
        let mut out = Vec::new();
        if from >= end || max_records == 0 {
            return Ok(out);
        }
        let segs: Vec<Arc<Segment>> = {
            let map = self.shared.segments.read().map_err(|_| lock_poisoned())?;
            let start = map.keys().next().copied().unwrap_or(0);
            if from < start {
                return Err(Error::OffsetDeleted {
                    requested: from,
                    start,
                });
            }
            let first = map
                .range(..=from)
                .next_back()
                .map(|(b, _)| *b)
                .unwrap_or(start);
            map.range(first..).map(|(_, s)| s.clone()).collect()
        };
        let mut cursor = from;
        for seg in segs {
            if out.len() >= max_records {
                break;
            }
            let (mut expected, mut pos, durable_len, seg_end) = {
                let st = seg.state.read().map_err(|_| lock_poisoned())?;
                if cursor >= st.end_offset {
                    continue;
                }
                let i = st.index.partition_point(|(o, _)| *o <= cursor);
                let (o, p) = if i == 0 {
                    (seg.base, HEADER_LEN)
                } else {
                    st.index[i - 1]
                };
                (o, p, st.durable_len, st.end_offset)
            };
            let mut buf: Vec<u8> = Vec::new();
            let mut buf_start = pos;
            while expected < seg_end && out.len() < max_records {
                let consumed = (pos - buf_start) as usize;
                match segment::decode_record(&buf[consumed..], expected) {
                    Ok(Some((payload, used))) => {
                        if expected >= cursor {
                            out.push(Record {
                                offset: expected,
                                payload: Bytes::copy_from_slice(payload),
                            });
                        }
                        expected += 1;
                        pos += used as u64;
                    }
                    Ok(None) => {
                        // Need more bytes: keep the unconsumed tail, read the next chunk.
                        buf.drain(..consumed);
                        buf_start = pos;
                        let want =
                            (durable_len - (buf_start + buf.len() as u64)).min(4 << 20) as usize;
                        if want == 0 {
                            return Err(Error::Corrupt {
                                path: seg.path.clone(),
                                position: pos,
                                reason: "record runs past the durable end".into(),
                            });
                        }
                        let old = buf.len();
                        buf.resize(old + want, 0);
                        seg.file
                            .read_exact_at(&mut buf[old..], buf_start + old as u64)
                            .at(&seg.path)?;
                    }
                    Err(reason) => {
                        return Err(Error::Corrupt {
                            path: seg.path.clone(),
                            position: pos,
                            reason,
                        });
                    }
                }
            }
            cursor = expected;
        }
        Ok(out)
    }

    fn start_offset(&self) -> Offset {
        self.shared
            .segments
            .read()
            .ok()
            .and_then(|m| m.keys().next().copied())
            .unwrap_or(0)
    }

    fn end_offset(&self) -> Offset {
        *self.shared.end_tx.borrow()
    }

    fn watch_end(&self) -> watch::Receiver<Offset> {
        self.shared.end_tx.subscribe()
    }

    fn register_consumer(&self, name: &str) -> Result<Offset> {
        let start = self.start_offset();
        let mut c = self.consumers.lock().map_err(|_| lock_poisoned())?;
        if let Some(o) = c.offsets.get(name) {
            return Ok(*o);
        }
        c.offsets.insert(name.to_string(), start);
        c.save()?;
        Ok(start)
    }

    fn unregister_consumer(&self, name: &str) -> Result<()> {
        let min = {
            let mut c = self.consumers.lock().map_err(|_| lock_poisoned())?;
            if c.offsets.remove(name).is_none() {
                return Err(Error::UnknownConsumer(name.to_string()));
            }
            c.save()?;
            c.offsets.values().min().copied()
        };
        if let Some(min) = min {
            self.delete_passed_segments(min)?;
        }
        Ok(())
    }

    fn commit(&self, name: &str, next_offset: Offset) -> Result<()> {
        let end = self.end_offset();
        if next_offset > end {
            return Err(Error::CommitBeyondEnd {
                name: name.to_string(),
                offset: next_offset,
                end,
            });
        }
        let min = {
            let mut c = self.consumers.lock().map_err(|_| lock_poisoned())?;
            match c.offsets.get_mut(name) {
                Some(o) => *o = next_offset,
                None => return Err(Error::UnknownConsumer(name.to_string())),
            }
            c.save()?;
            c.offsets.values().min().copied().unwrap_or(0)
        };
        self.delete_passed_segments(min)
    }

    fn consumers(&self) -> Vec<ConsumerOffset> {
        self.consumers
            .lock()
            .map(|c| {
                c.offsets
                    .iter()
                    .map(|(n, o)| ConsumerOffset {
                        name: n.clone(),
                        next_offset: *o,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn appended_ago(&self, offset: Offset) -> Option<std::time::Duration> {
        self.shared.appended.ago(offset, Instant::now())
    }

    fn health(&self) -> LogHealth {
        self.shared
            .health
            .lock()
            .map(|h| h.clone())
            .unwrap_or(LogHealth::Failed("lock poisoned".into()))
    }

    fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    fn shutdown(&self) -> Result<()> {
        // Dropping the sender lets the writer drain what is queued, then exit.
        self.tx.write().map_err(|_| lock_poisoned())?.take();
        let handle = self.writer.lock().map_err(|_| lock_poisoned())?.take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            return Err(Error::Unavailable("WAL writer thread panicked".into()));
        }
        if let Ok(mut h) = self.shared.health.lock()
            && *h == LogHealth::Ok
        {
            *h = LogHealth::Closed;
        }
        Ok(())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests;

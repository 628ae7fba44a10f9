use super::*;

fn cfg(dir: &Path) -> WalConfig {
    WalConfig::new(dir)
}

fn payload(i: u64) -> Bytes {
    Bytes::from(format!("record-{i}-{}", "x".repeat((i % 7) as usize)))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn append_n(wal: &Wal, from: u64, n: u64) {
    rt().block_on(async {
        for i in from..from + n {
            let r = wal
                .append(vec![payload(i)])
                .unwrap()
                .durable()
                .await
                .unwrap();
            assert_eq!(r, i..i + 1);
        }
    });
}

fn read_all(wal: &Wal) -> Vec<Record> {
    wal.read(wal.start_offset(), usize::MAX).unwrap()
}

#[test]
fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(cfg(dir.path())).unwrap();
        append_n(&wal, 0, 10);
        let t = wal
            .append(vec![payload(10), payload(11), payload(12)])
            .unwrap();
        assert_eq!(rt().block_on(t.durable()).unwrap(), 10..13);
        assert_eq!(wal.end_offset(), 13);
        assert_eq!(
            wal.read(5, 3)
                .unwrap()
                .iter()
                .map(|r| r.offset)
                .collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert!(wal.read(13, 10).unwrap().is_empty());
    }
    let wal = Wal::open(cfg(dir.path())).unwrap();
    let all = read_all(&wal);
    assert_eq!(all.len(), 13);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.payload, payload(i as u64));
    }
    assert_eq!(wal.recovery_report().truncated, None);
}

#[test]
fn concurrent_appends_share_fsyncs_and_stay_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(cfg(dir.path())).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ranges = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..50u64 {
                    let recs = (0..3)
                        .map(|k| Bytes::from(format!("{t}-{i}-{k}")))
                        .collect();
                    out.push(wal.append(recs).unwrap().durable().await.unwrap());
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut ranges = ranges;
    ranges.sort_by_key(|r| r.start);
    let mut next = 0;
    for r in &ranges {
        assert_eq!(r.start, next);
        assert_eq!(r.end - r.start, 3);
        next = r.end;
    }
    assert_eq!(wal.end_offset(), 16 * 50 * 3);
    // Every append's records are contiguous and in order.
    for r in read_all(&wal).chunks(3) {
        let s: Vec<_> = r
            .iter()
            .map(|x| String::from_utf8_lossy(&x.payload).to_string())
            .collect();
        let p0: Vec<_> = s[0].rsplitn(2, '-').collect();
        assert!(s[1].starts_with(p0[1]) && s[2].starts_with(p0[1]));
    }
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 4096;
    {
        let wal = Wal::open(c.clone()).unwrap();
        let big: Vec<Bytes> = (0..2000u64)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 700]))
            .collect();
        for chunk in big.chunks(50) {
            rt().block_on(wal.append(chunk.to_vec()).unwrap().durable())
                .unwrap();
        }
        assert!(wal.segment_count() > 10);
        // Reads from arbitrary offsets use the sparse index and cross segment boundaries.
        for from in [0u64, 1, 49, 50, 999, 1500, 1999] {
            let got = wal.read(from, 120).unwrap();
            assert_eq!(got[0].offset, from);
            assert_eq!(got.len(), (2000 - from).min(120) as usize);
            for r in &got {
                assert_eq!(r.payload[0], (r.offset % 251) as u8);
            }
        }
    }
    let wal = Wal::open(c).unwrap();
    assert_eq!(wal.end_offset(), 2000);
    assert_eq!(read_all(&wal).len(), 2000);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "LOCK" {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn torn_tail_at_every_byte_keeps_every_earlier_record() {
    let src = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(cfg(src.path())).unwrap();
        append_n(&wal, 0, 5);
    }
    let seg = last_segment(src.path());
    let full = std::fs::metadata(&seg).unwrap().len();
    let last_len = (RECORD_HEADER_LEN + payload(4).len()) as u64;
    for cut in 1..=last_len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let f = OpenOptions::new()
            .write(true)
            .open(last_segment(dir.path()))
            .unwrap();
        f.set_len(full - cut).unwrap();
        drop(f);
        let wal = Wal::open(cfg(dir.path())).unwrap();
        let recs = read_all(&wal);
        assert_eq!(recs.len(), 4, "cut {cut}");
        assert_eq!(
            wal.recovery_report().truncated.is_some(),
            cut < last_len,
            "a whole-record cut leaves a clean file"
        );
        assert_eq!(
            recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            (0..4).map(payload).collect::<Vec<_>>()
        );
        // The log goes on from the cut.
        assert_eq!(
            rt().block_on(wal.append(vec![payload(99)]).unwrap().durable())
                .unwrap(),
            4..5
        );
        drop(wal);
        let wal = Wal::open(cfg(dir.path())).unwrap();
        assert_eq!(read_all(&wal).len(), 5);
        assert_eq!(wal.recovery_report().truncated, None);
    }
}

#[test]
fn flipped_bytes_in_the_tail_keep_every_earlier_record() {
    let src = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(cfg(src.path())).unwrap();
        append_n(&wal, 0, 6);
    }
    let seg = last_segment(src.path());
    let bytes = std::fs::read(&seg).unwrap();
    let rec_lens: Vec<u64> = (0..6)
        .map(|i| (RECORD_HEADER_LEN + payload(i).len()) as u64)
        .collect();
    let mut start = HEADER_LEN;
    for (i, len) in rec_lens.iter().enumerate() {
        for b in start..start + len {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let mut damaged = bytes.clone();
            damaged[b as usize] ^= 0x5a;
            std::fs::write(last_segment(dir.path()), &damaged).unwrap();
            let wal = Wal::open(cfg(dir.path())).unwrap();
            let recs = read_all(&wal);
            assert_eq!(recs.len(), i, "flip at byte {b} in record {i}");
            for (k, r) in recs.iter().enumerate() {
                assert_eq!(r.payload, payload(k as u64));
            }
        }
        start += len;
    }
}

#[test]
fn corruption_in_a_sealed_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 256;
    {
        let wal = Wal::open(c.clone()).unwrap();
        append_n(&wal, 0, 40);
        assert!(wal.segment_count() > 2);
    }
    let first = segment::segment_path(dir.path(), 0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[HEADER_LEN as usize + 20] ^= 1;
    std::fs::write(&first, bytes).unwrap();
    let err = Wal::open(c).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn second_open_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = Wal::open(cfg(dir.path())).unwrap();
    assert!(matches!(Wal::open(cfg(dir.path())), Err(Error::Locked(_))));
}

#[test]
fn consumers_hold_segments_until_all_have_passed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 256;
    {
        let wal = Wal::open(c.clone()).unwrap();
        assert_eq!(wal.register_consumer("store").unwrap(), 0);
        assert_eq!(wal.register_consumer("stream").unwrap(), 0);
        append_n(&wal, 0, 60);
        let segs = wal.segment_count();
        assert!(segs > 3);
        wal.commit("store", 60).unwrap();
        assert_eq!(
            wal.segment_count(),
            segs,
            "stream has not passed anything yet"
        );
        wal.commit("stream", 30).unwrap();
        assert!(wal.segment_count() < segs);
        assert!(wal.start_offset() > 0 && wal.start_offset() <= 30);
        assert!(matches!(wal.read(0, 1), Err(Error::OffsetDeleted { .. })));
        assert_eq!(wal.read(30, 100).unwrap().len(), 30);
        assert!(matches!(
            wal.commit("nobody", 1),
            Err(Error::UnknownConsumer(_))
        ));
        assert!(matches!(
            wal.commit("store", 61),
            Err(Error::CommitBeyondEnd { .. })
        ));
    }
    let wal = Wal::open(c).unwrap();
    let offsets = wal.consumers();
    assert_eq!(
        offsets.iter().map(|c| c.next_offset).collect::<Vec<_>>(),
        vec![60, 30]
    );
    assert_eq!(wal.register_consumer("stream").unwrap(), 30);
    assert_eq!(read_all(&wal).last().unwrap().offset, 59);
}

#[test]
fn full_queue_is_refused_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_queue_bytes = 1024;
    let wal = Wal::open(c).unwrap();
    // Fill the queue faster than one fsync: some appends must be refused with QueueFull.
    let mut tickets = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match wal.append(vec![Bytes::from(vec![0u8; 300])]) {
            Ok(t) => tickets.push(t),
            Err(Error::QueueFull { limit, .. }) => {
                assert_eq!(limit, 1024);
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0);
    rt().block_on(async {
        for t in tickets {
            t.durable().await.unwrap();
        }
    });
    assert_eq!(wal.queued_bytes(), 0);
}

#[test]
fn fsync_failure_stops_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(dir.path())).unwrap();
    append_n(&wal, 0, 3);
    wal.inject_sync_failure();
    let err = rt()
        .block_on(wal.append(vec![payload(3)]).unwrap().durable())
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(matches!(wal.health(), LogHealth::Failed(_)));
    assert!(matches!(
        wal.append(vec![payload(4)]),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(
        wal.end_offset(),
        3,
        "nothing unacknowledged becomes visible"
    );
}

#[test]
fn shutdown_flushes_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(cfg(dir.path())).unwrap();
        for i in 0..100 {
            drop(wal.append(vec![payload(i)]).unwrap()); // fire and forget, like ?sync=false
        }
        wal.shutdown().unwrap();
        assert!(matches!(wal.append(vec![payload(0)]), Err(Error::Closed)));
    }
    let wal = Wal::open(cfg(dir.path())).unwrap();
    assert_eq!(read_all(&wal).len(), 100);
}

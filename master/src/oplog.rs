//! The operation log: every metadata change as a `cairn-record` data frame (writer 1, sequence =
//! the entry's number, payload = one JSON [`Entry`]), fsynced before the change is acknowledged.
//!
//! A file is raw frames from offset 0 (no chunk header): first a `begin` entry whose sequence is
//! the last sequence *before* this file (the one the checkpoint covers), then entries numbered
//! on from it. Writes are group-committed by one task: whatever queued during an `fdatasync`
//! shares the next one. See FORMAT.md, "Master operation log, version 3".
//!
//! Every file operation goes through the master's [`SharedDisk`] (the real file system, the
//! power-cut test disk, or an in-memory disk in tests and simulations).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_files::{Blocking, DiskFile, DynDisk, SharedDisk};

use cairn_record::{RecordId, Recovery, ScanItem, Scanner, WriterId};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::limits::OPLOG_ENTRY_BYTES_MAX;
use crate::meta::{Entry, Metadata};

/// File name of the operation log in the data directory.
pub(crate) const FILE: &str = "oplog";
/// Where a fresh operation log is prepared before it replaces the old one.
pub(crate) const TMP: &str = "oplog.tmp";
/// Writer id of every operation-log frame.
pub(crate) const WRITER_ID: WriterId = WriterId(1);
/// The operation-log format this code writes. Version 2 added chunk salvage (the `salvage` entry and
/// a chunk's `lost_end`); version 1 files have neither and are read as they are. A master of
/// version 1 refuses version 2 files by their format number instead of dropping what it
/// does not know. Version 3 added a log's `place_on` (absent in older files: anywhere), so a
/// version 2 master refuses version 3 files rather than place such a log's chunks elsewhere.
pub(crate) const FORMAT: u32 = 3;
/// The oldest operation-log format this code reads.
pub(crate) const FORMAT_READ_MIN: u32 = 1;

/// Appends the frame of entry number `sequence` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, sequence: u64, entry: &Entry) {
    let payload = serde_json::to_vec(entry).expect("entries always serialise to JSON");
    let id = RecordId {
        writer: WRITER_ID,
        sequence,
    };
    cairn_record::encode_record(out, id, &payload, OPLOG_ENTRY_BYTES_MAX)
        .expect("operation-log entries stay far below the record limit");
}

/// The entries of one operation-log file.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    /// The sequence the file continues from (its `begin` frame), or `None` for an empty file.
    pub(crate) after: Option<u64>,
    /// Entries with their sequences, in order.
    pub(crate) entries: Vec<(u64, Entry)>,
    /// `Some(valid_len)` when a torn tail past `valid_len` was found.
    pub(crate) torn_at: Option<u64>,
}

/// Parses an operation-log file. A bad tail with nothing valid after it is a torn append (the
/// entry was never acknowledged) and is reported in `torn_at`; bad bytes followed by valid
/// frames, a gap in sequences or an entry that is not JSON is corruption: an error.
pub(crate) fn parse(buf: &[u8], path: &Path) -> Result<Parsed> {
    let corrupt = |offset: u64, reason: String| Error::OplogCorrupt {
        path: path.to_owned(),
        offset,
        reason,
    };
    let (valid_len, torn_at) = match cairn_record::classify(buf, 0, 0) {
        Recovery::Clean => (buf.len() as u64, None),
        Recovery::TornTail { valid_len } => (valid_len, Some(valid_len)),
        Recovery::Corrupt { ranges } => {
            let first = ranges.first().map_or(0, |r| r.offset);
            let reason = format!(
                "{} bad byte range(s) followed by valid entries; refusing to drop acknowledged changes",
                ranges.len()
            );
            return Err(corrupt(first, reason));
        }
    };
    let mut after = None;
    let mut entries = Vec::new();
    let mut expected = None;
    for item in Scanner::new(&buf[..valid_len as usize], 0) {
        let ScanItem::Record {
            offset,
            id,
            payload,
        } = item
        else {
            let offset = match item {
                ScanItem::Padding { offset, .. } | ScanItem::Corrupt { offset, .. } => offset,
                ScanItem::Record { offset, .. } => offset,
            };
            return Err(corrupt(
                offset,
                "padding or bad bytes in the log".to_owned(),
            ));
        };
        if id.writer != WRITER_ID {
            return Err(corrupt(offset, format!("frame of writer {}", id.writer)));
        }
        let entry: Entry = serde_json::from_slice(payload)
            .map_err(|e| corrupt(offset, format!("entry is not valid JSON: {e}")))?;
        match (&entry, expected) {
            (Entry::Begin { format }, None) => {
                if !(FORMAT_READ_MIN..=FORMAT).contains(format) {
                    return Err(corrupt(offset, format!("unknown format {format}")));
                }
                after = Some(id.sequence);
            }
            (Entry::Begin { .. }, Some(_)) => {
                return Err(corrupt(offset, "second begin entry".to_owned()));
            }
            (_, None) => return Err(corrupt(offset, "first entry is not begin".to_owned())),
            (_, Some(want)) if id.sequence != want => {
                return Err(corrupt(
                    offset,
                    format!("entry {} where {want} was expected", id.sequence),
                ));
            }
            _ => entries.push((id.sequence, entry)),
        }
        expected = Some(id.sequence + 1);
    }
    Ok(Parsed {
        after,
        entries,
        torn_at,
    })
}

/// Entries waiting for the committer, numbered as they were queued.
#[derive(Debug)]
pub(crate) struct OplogQueue {
    next_sequence: u64,
    buf: Vec<u8>,
    since_checkpoint: u64,
}

impl OplogQueue {
    /// A queue whose first entry gets `last_sequence + 1`.
    pub(crate) fn new(last_sequence: u64) -> OplogQueue {
        OplogQueue {
            next_sequence: last_sequence + 1,
            buf: Vec::new(),
            since_checkpoint: 0,
        }
    }

    /// Queues `entry` and returns its sequence.
    pub(crate) fn push(&mut self, entry: &Entry) -> u64 {
        let sequence = self.next_sequence;
        encode(&mut self.buf, sequence, entry);
        self.next_sequence += 1;
        self.since_checkpoint += 1;
        sequence
    }

    /// The sequence of the last entry queued.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Takes the queued bytes, and a checkpoint of `meta` when `force` or `every` entries were
    /// queued since the last one. Call with the lock that orders `push` and metadata changes
    /// held, so the checkpoint reflects exactly the entries through `last_sequence`.
    pub(crate) fn take(&mut self, meta: &Metadata, every: u64, force: bool) -> Batch {
        let checkpoint = (force || self.since_checkpoint >= every).then(|| {
            self.since_checkpoint = 0;
            checkpoint::encode(meta, self.last_sequence())
        });
        Batch {
            bytes: std::mem::take(&mut self.buf),
            last_sequence: self.last_sequence(),
            checkpoint,
        }
    }
}

/// What the committer writes in one round.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    last_sequence: u64,
    checkpoint: Option<Vec<u8>>,
}

/// How far the operation log is durable, and whether it broke.
#[derive(Clone, Debug, Default)]
pub(crate) struct Durable {
    sequence: u64,
    failed: Option<String>,
}

/// The open operation-log file the committer appends to.
pub(crate) type LogFile = Box<dyn DiskFile>;

/// Loads the data directory on `disk`: the checkpoint plus the operation-log entries after it,
/// a torn tail cut. Then writes a fresh checkpoint and an empty operation log after it, so the
/// next entries never land behind a torn tail. Returns the metadata, the last sequence and the
/// open log file.
pub(crate) fn open(disk: &DynDisk, dir: &Path) -> Result<(Metadata, u64, LogFile)> {
    disk.create_dir_all(dir).map_err(Error::io(dir))?;
    for leftover in [TMP, checkpoint::TMP] {
        match disk.remove_file(&dir.join(leftover)) {
            Ok(()) => warn!(
                file = leftover,
                "removed a leftover of an interrupted checkpoint"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(dir.join(leftover))(e)),
        }
    }
    let (mut meta, covered) = checkpoint::read(disk, dir)?.unwrap_or_default();
    let path = dir.join(FILE);
    let mut last = covered;
    let mut replayed = 0u64;
    match cairn_files::read_file(disk, &path) {
        Ok(buf) => {
            let parsed = parse(&buf, &path)?;
            if let Some(valid_len) = parsed.torn_at {
                warn!(
                    file = %path.display(),
                    valid_len,
                    file_len = buf.len(),
                    "cut a torn tail of the operation log (an unacknowledged entry)"
                );
            }
            let after = parsed.after.unwrap_or(covered);
            if after > covered {
                return Err(Error::OplogCorrupt {
                    path,
                    offset: 0,
                    reason: format!(
                        "the log starts after entry {after} but the checkpoint covers only \
                         entries through {covered}: entries are missing"
                    ),
                });
            }
            for (sequence, entry) in parsed.entries {
                if sequence <= covered {
                    continue;
                }
                meta.apply(&entry).map_err(|reason| Error::OplogCorrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: format!("entry {sequence} does not apply: {reason}"),
                })?;
                last = sequence;
                replayed += 1;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path)(e)),
    }
    checkpoint::write(disk, dir, &checkpoint::encode(&meta, last))?;
    let file = fresh(disk, dir, last)?;
    info!(
        dir = %dir.display(),
        logs = meta.logs.len(),
        chunks = meta.chunks.len(),
        checkpoint_sequence = covered,
        replayed,
        last_sequence = last,
        "recovered master metadata"
    );
    Ok((meta, last, file))
}

/// Starts an empty operation log continuing after `after`: `oplog.tmp` with the begin frame,
/// fsync, rename over `oplog`, fsync the directory. Returns the file, open for appending.
pub(crate) fn fresh(disk: &DynDisk, dir: &Path, after: u64) -> Result<LogFile> {
    let mut buf = Vec::new();
    encode(&mut buf, after, &Entry::Begin { format: FORMAT });
    cairn_files::replace(disk, dir, FILE, &buf).map_err(Error::io(&dir.join(FILE)))
}

/// Appends `bytes` at the end of the log file `f` and makes them durable.
fn append(f: &LogFile, bytes: &[u8]) -> std::io::Result<()> {
    if !bytes.is_empty() {
        f.write_all_at(bytes, f.size()?)?;
        f.sync_data()?;
    }
    Ok(())
}

/// The handle on the committer task.
#[derive(Debug)]
pub(crate) struct Committer {
    kick: Arc<Notify>,
    durable: watch::Receiver<Durable>,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Committer {
    /// Starts the committer on `file` (which holds everything through `last_sequence`) in `dir`
    /// on `disk`. `take` is called with the metadata lock to collect each round's batch; its
    /// argument asks for a checkpoint regardless of the entry count (clean shutdown).
    pub(crate) fn spawn(
        disk: SharedDisk,
        dir: PathBuf,
        file: LogFile,
        last_sequence: u64,
        blocking: Blocking,
        take: impl FnMut(bool) -> Batch + Send + 'static,
    ) -> Committer {
        let kick = Arc::new(Notify::new());
        let (durable_tx, durable) = watch::channel(Durable {
            sequence: last_sequence,
            failed: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            disk,
            dir,
            file,
            blocking,
            take,
            kick.clone(),
            durable_tx,
            stop_rx,
        ));
        Committer {
            kick,
            durable,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Waits until entry `sequence` is durable.
    pub(crate) async fn wait(&self, sequence: u64) -> Result<()> {
        self.kick.notify_one();
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| d.sequence >= sequence || d.failed.is_some())
            .await
            .map(|d| d.clone())
            .map_err(|_| Error::OplogFailed {
                reason: "the master is shutting down".to_owned(),
            })?;
        match state.failed {
            Some(reason) if state.sequence < sequence => Err(Error::OplogFailed { reason }),
            _ => Ok(()),
        }
    }

    /// The first write error, if the log broke.
    pub(crate) fn failure(&self) -> Option<String> {
        self.durable.borrow().failed.clone()
    }

    /// Writes what is queued, a final checkpoint, and stops the task.
    pub(crate) async fn close(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take()
            && let Err(e) = task.await
        {
            error!(error = %e, "operation-log committer panicked");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    disk: SharedDisk,
    dir: PathBuf,
    file: LogFile,
    blocking: Blocking,
    mut take: impl FnMut(bool) -> Batch + Send + 'static,
    kick: Arc<Notify>,
    durable: watch::Sender<Durable>,
    mut stop: watch::Receiver<bool>,
) {
    let mut file = Some(file);
    loop {
        let stopping = *stop.borrow() || {
            tokio::select! {
                _ = kick.notified() => false,
                _ = stop.changed() => true,
            }
        };
        let batch = take(stopping);
        let f = file
            .take()
            .expect("the committer owns the file between rounds");
        let bytes = batch.bytes;
        let written = blocking.run(move || append(&f, &bytes).map(|()| f)).await;
        match written {
            Ok(f) => file = Some(f),
            Err(e) => {
                error!(error = %e, dir = %dir.display(), "operation log write failed; the master accepts no more changes");
                durable.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
        }
        durable.send_modify(|d| d.sequence = batch.last_sequence);
        if let Some(json) = batch.checkpoint {
            let (disk2, dir2) = (disk.clone(), dir.clone());
            let last = batch.last_sequence;
            let rotated = blocking
                .run(move || {
                    checkpoint::write(&*disk2, &dir2, &json)?;
                    fresh(&*disk2, &dir2, last)
                })
                .await;
            match rotated {
                Ok(f) => {
                    info!(
                        sequence = last,
                        "checkpoint written, operation log restarted"
                    );
                    file = Some(f);
                }
                // The old log still holds every entry through `last`, so carrying on with it
                // is safe; the next checkpoint tries again.
                Err(e) => warn!(error = %e, "checkpoint failed; keeping the current operation log"),
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ChunkState;
    use cairn_record::{ChunkHandle, ChunkVersion};

    fn create(path: &str) -> Entry {
        Entry::CreateLog {
            path: path.to_owned(),
            replication: 1,
            min_replicas: 0,
            chunk_bytes: 8192,
            place_on: String::new(),
        }
    }

    fn file(after: u64, entries: &[Entry]) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, after, &Entry::Begin { format: FORMAT });
        for (i, e) in entries.iter().enumerate() {
            encode(&mut buf, after + 1 + i as u64, e);
        }
        buf
    }

    // Every cut of a log inside its last entry is a torn tail that keeps the entries before it.
    #[test]
    fn torn_tail_is_cut_at_the_last_whole_entry() {
        let whole = file(0, &[create("/a"), create("/b")]);
        let two = file(0, &[create("/a")]).len();
        for cut in two + 1..whole.len() {
            let p = parse(&whole[..cut], Path::new("oplog")).unwrap();
            assert_eq!(p.entries, vec![(1, create("/a"))], "cut {cut}");
            assert_eq!(p.torn_at, Some(two as u64));
        }
        let p = parse(&whole, Path::new("oplog")).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.torn_at, None);
        // A zero-filled tail (a file extended but never written) is torn too.
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(parse(&zeros, Path::new("oplog")).unwrap().entries.len(), 2);
    }

    // A flipped byte in the middle is corruption: an error, never a silent cut.
    #[test]
    fn corruption_in_the_middle_is_an_error() {
        let mut buf = file(0, &[create("/a"), create("/b"), create("/c")]);
        let first = file(0, &[]).len();
        buf[first + 40] ^= 1;
        let err = parse(&buf, Path::new("oplog")).unwrap_err();
        assert!(matches!(err, Error::OplogCorrupt { .. }), "{err}");
    }

    // A sequence gap or a missing begin entry is corruption.
    #[test]
    fn gaps_and_missing_begin_are_errors() {
        let mut buf = file(0, &[create("/a")]);
        encode(&mut buf, 5, &create("/b"));
        assert!(parse(&buf, Path::new("oplog")).is_err());
        let mut buf = Vec::new();
        encode(&mut buf, 1, &create("/a"));
        assert!(parse(&buf, Path::new("oplog")).is_err());
    }

    fn write_oplog(dir: &Path, bytes: &[u8]) {
        std::fs::write(dir.join(FILE), bytes).unwrap();
    }

    fn fs_disk() -> SharedDisk {
        cairn_files::shared(cairn_files::FsDisk)
    }

    // Restart = checkpoint + the entries after it: entries the checkpoint covers are skipped,
    // later ones applied, a torn tail dropped; the directory is left with a fresh checkpoint.
    #[test]
    fn open_replays_checkpoint_plus_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut covered = Metadata::default();
        covered.apply(&create("/a")).unwrap();
        checkpoint::write(&*fs_disk(), dir.path(), &checkpoint::encode(&covered, 1)).unwrap();
        let handle = ChunkHandle(7);
        let mut log = file(
            0,
            &[
                create("/a"),
                Entry::Allocate {
                    path: "/a".into(),
                    index: 0,
                    handle,
                    version: ChunkVersion(1),
                    replicas: vec!["x:1".into()],
                },
                Entry::Version {
                    handle,
                    version: ChunkVersion(2),
                },
            ],
        );
        let torn_from = log.len();
        encode(&mut log, 4, &create("/torn"));
        log.truncate(torn_from + 20);
        write_oplog(dir.path(), &log);
        let (meta, last, _f) = open(&*fs_disk(), dir.path()).unwrap();
        assert_eq!(last, 3);
        assert_eq!(meta.chunks[&handle].version, ChunkVersion(2));
        assert_eq!(meta.chunks[&handle].state, ChunkState::Open);
        assert!(!meta.logs.contains_key("/torn"));
        // The fresh files alone give the same state.
        let (again, last_again, _f) = open(&*fs_disk(), dir.path()).unwrap();
        assert_eq!((again, last_again), (meta, 3));
        let bytes = std::fs::read(dir.path().join(FILE)).unwrap();
        let parsed = parse(&bytes, Path::new("x")).unwrap();
        assert_eq!((parsed.after, parsed.entries.len()), (Some(3), 0));
    }

    // A log that starts after the checkpoint's sequence means entries are missing: refuse.
    #[test]
    fn log_newer_than_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_oplog(dir.path(), &file(5, &[create("/a")]));
        assert!(matches!(
            open(&*fs_disk(), dir.path()),
            Err(Error::OplogCorrupt { .. })
        ));
    }

    // The committer makes queued entries durable, group-commits, and checkpoints on close.
    #[tokio::test]
    async fn committer_writes_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, last, f) = open(&*fs_disk(), dir.path()).unwrap();
        let state = Arc::new(std::sync::Mutex::new((meta, OplogQueue::new(last))));
        let s2 = state.clone();
        let committer = Committer::spawn(
            fs_disk(),
            dir.path().to_owned(),
            f,
            last,
            Blocking::Threads,
            move |force| {
                let mut g = s2.lock().unwrap();
                let (meta, queue) = &mut *g;
                queue.take(meta, 3, force)
            },
        );
        let mut seqs = Vec::new();
        for i in 0..5 {
            let e = create(&format!("/l{i}"));
            let mut g = state.lock().unwrap();
            g.0.apply(&e).unwrap();
            seqs.push(g.1.push(&e));
        }
        for s in &seqs {
            committer.wait(*s).await.unwrap();
        }
        committer.close().await;
        let (meta, last, _f) = open(&*fs_disk(), dir.path()).unwrap();
        assert_eq!(last, 5);
        assert_eq!(meta.logs.len(), 5);
    }

    /// The data directory of the tests on an in-memory disk.
    const MEM_DIR: &str = "/master";

    /// A fresh in-memory disk, and the same disk as the master's seam.
    fn mem_disk() -> (cairn_files::FaultyDisk, SharedDisk) {
        let disk = cairn_files::FaultyDisk::new();
        (disk.clone(), cairn_files::shared(disk))
    }

    /// Appends entry `sequence` to the log file `f`, synced or not.
    fn append_entry(f: &LogFile, sequence: u64, entry: &Entry, sync: bool) -> usize {
        let mut buf = Vec::new();
        encode(&mut buf, sequence, entry);
        f.write_all_at(&buf, f.size().unwrap()).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
        buf.len()
    }

    // Proves: an operation-log entry written but never synced is gone after a power cut, both
    // when written straight to the file and when the committer's fsync is where the power
    // fails (its waiter is told the entry failed); the master starts again with every synced
    // entry.
    #[tokio::test]
    async fn an_unsynced_entry_is_gone_after_a_crash_and_the_master_starts() {
        let (faulty, disk) = mem_disk();
        let dir = Path::new(MEM_DIR);
        let (_, last, f) = open(&*disk, dir).unwrap();
        assert_eq!(last, 0);
        append_entry(&f, 1, &create("/synced"), true);
        append_entry(&f, 2, &create("/unsynced"), false);
        let log = faulty.contents(&dir.join(FILE)).unwrap();
        assert_eq!(
            parse(&log, dir).unwrap().entries.len(),
            2,
            "both were written"
        );
        faulty.crash(0);
        let (meta, last, f) = open(&*disk, dir).unwrap();
        assert_eq!(last, 1);
        assert!(meta.logs.contains_key("/synced"));
        assert!(!meta.logs.contains_key("/unsynced"));

        // The committer: the power fails at its fsync of entry 2.
        let state = Arc::new(std::sync::Mutex::new((meta, OplogQueue::new(last))));
        let s2 = state.clone();
        let committer = Committer::spawn(
            disk.clone(),
            dir.into(),
            f,
            last,
            Blocking::Threads,
            move |force| {
                let mut g = s2.lock().unwrap();
                let (meta, queue) = &mut *g;
                queue.take(meta, 1_000, force)
            },
        );
        let lost = {
            let mut g = state.lock().unwrap();
            g.0.apply(&create("/lost")).unwrap();
            g.1.push(&create("/lost"))
        };
        faulty.crash_at_sync(1);
        assert!(committer.wait(lost).await.is_err());
        assert!(committer.failure().is_some());
        committer.close().await;
        faulty.crash(0);
        let (meta, last, _f) = open(&*disk, dir).unwrap();
        assert_eq!(last, 1);
        assert!(meta.logs.contains_key("/synced"));
        assert!(!meta.logs.contains_key("/lost"));
    }

    // Proves: a power cut that keeps any prefix of the last, unsynced entry (a torn write) is
    // read back as a log ending at the entry before it: the torn entry is dropped, never
    // misread, and the master starts; kept whole, the entry is there. Every cut is tried.
    #[test]
    fn a_torn_last_entry_is_dropped_never_misread() {
        let dir = Path::new(MEM_DIR);
        let mut entry = Vec::new();
        encode(&mut entry, 2, &create("/torn"));
        assert!(entry.len() > 40, "an entry is dozens of bytes");
        for keep in 0..=entry.len() {
            let (faulty, disk) = mem_disk();
            let (_, _, f) = open(&*disk, dir).unwrap();
            append_entry(&f, 1, &create("/a"), true);
            assert_eq!(append_entry(&f, 2, &create("/torn"), false), entry.len());
            faulty.crash(keep);
            let (meta, last, _f) = open(&*disk, dir).unwrap();
            assert!(meta.logs.contains_key("/a"), "keep {keep}");
            if keep < entry.len() {
                assert_eq!((last, meta.logs.len()), (1, 1), "keep {keep}");
            } else {
                assert_eq!(last, 2);
                assert!(meta.logs.contains_key("/torn"));
            }
            // A restart after the cut starts a clean log: a second one reads the same.
            let (again, last_again, _f) = open(&*disk, dir).unwrap();
            assert_eq!((again, last_again), (meta, last), "keep {keep}");
        }
    }

    // Proves: a power cut before any step of a checkpoint's rotation (the checkpoint replaced,
    // then the operation log replaced by a fresh one), with or without the unsynced bytes,
    // leaves the old or the new checkpoint, never a mix or none, and the master starts with
    // the same metadata; every one of the ten steps was interrupted once.
    #[test]
    fn a_checkpoint_rotation_interrupted_at_each_step_leaves_the_old_or_the_new() {
        let dir = Path::new(MEM_DIR);
        let ckpt = dir.join(checkpoint::FILE);
        let mut interrupted = 0;
        for call in 1.. {
            let mut finished = false;
            for keep in [0, usize::MAX] {
                let (faulty, disk) = mem_disk();
                let (mut meta, _, f) = open(&*disk, dir).unwrap();
                for (i, path) in ["/a", "/b"].iter().enumerate() {
                    meta.apply(&create(path)).unwrap();
                    append_entry(&f, i as u64 + 1, &create(path), true);
                }
                let old = cairn_files::read_file(&*disk, &ckpt).unwrap();
                let new = checkpoint::encode(&meta, 2);
                faulty.power_off_at_call(call);
                finished = checkpoint::write(&*disk, dir, &new)
                    .and_then(|()| fresh(&*disk, dir, 2))
                    .is_ok();
                faulty.crash(keep);
                let after = cairn_files::read_file(&*disk, &ckpt).unwrap();
                assert!(after == old || after == new, "call {call} keep {keep}");
                if finished {
                    assert_eq!(after, new);
                }
                let (back, last, _f) = open(&*disk, dir).unwrap();
                assert_eq!((back, last), (meta, 2), "call {call} keep {keep}");
            }
            if finished {
                break;
            }
            interrupted += 1;
        }
        assert_eq!(interrupted, 10);
    }
}

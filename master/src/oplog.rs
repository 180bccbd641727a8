//! The operation log: every metadata change as an [`Entry`], numbered in the order the master
//! applied it, replicated through the master group's Raft log ([`crate::raft`]) before the
//! change is acknowledged.
//!
//! The leader's `MasterCore` applies each entry to its metadata and queues it here
//! ([`OplogQueue`]); the [`Committer`] proposes whatever queued meanwhile as one Raft entry (a
//! `Proposal`: group commit) and waits until it is committed, i.e. durable on a majority of
//! the masters, and applied to the state machine.
//!
//! Before Raft, the log was a file of its own (`oplog`, with `checkpoint.json`; FORMAT.md,
//! "Master operation log, version 3"). [`load_legacy`] reads such a directory once, when a
//! master of this version first starts on it: its metadata becomes the group's starting state.

use std::path::Path;
use std::sync::Arc;

use cairn_files::DynDisk;

use cairn_record::{Recovery, ScanItem, Scanner, WriterId};
use openraft::Raft;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::limits::PROPOSAL_BYTES_MAX;
use crate::meta::{Entry, Metadata};
use crate::raft::{Proposal, TypeConfig};

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

/// Appends the frame of entry number `sequence` to `out` (as the file-based log was written).
#[cfg(test)]
pub(crate) fn encode(out: &mut Vec<u8>, sequence: u64, entry: &Entry) {
    let payload = serde_json::to_vec(entry).expect("entries always serialise to JSON");
    let id = cairn_record::RecordId {
        writer: WRITER_ID,
        sequence,
    };
    cairn_record::encode_record(out, id, &payload, crate::limits::OPLOG_ENTRY_BYTES_MAX)
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

/// Whether `dir`'s `checkpoint.json` is [`MOVED_MARKER`]: the metadata lives in the Raft files.
pub(crate) fn is_moved(disk: &DynDisk, dir: &Path) -> Result<bool> {
    let path = dir.join(checkpoint::FILE);
    match cairn_files::read_file(disk, &path) {
        Ok(bytes) => Ok(bytes == MOVED_MARKER.as_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&path)(e)),
    }
}

/// Reads a data directory of the file-based operation log (`checkpoint.json` and `oplog`)
/// without changing it: the checkpoint plus the entries after it, a torn tail dropped. `None`
/// when the directory has neither file, or its metadata was moved into Raft ([`is_moved`]).
pub(crate) fn load_legacy(disk: &DynDisk, dir: &Path) -> Result<Option<(Metadata, u64)>> {
    if is_moved(disk, dir)? {
        return Ok(None);
    }
    let checkpoint = checkpoint::read(disk, dir)?;
    let path = dir.join(FILE);
    let buf = match cairn_files::read_file(disk, &path) {
        Ok(buf) => Some(buf),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&path)(e)),
    };
    if checkpoint.is_none() && buf.is_none() {
        return Ok(None);
    }
    let (mut meta, covered) = checkpoint.unwrap_or_default();
    let mut last = covered;
    if let Some(buf) = buf {
        let parsed = parse(&buf, &path)?;
        if let Some(valid_len) = parsed.torn_at {
            warn!(file = %path.display(), valid_len, file_len = buf.len(), "a torn tail of the old operation log (an unacknowledged entry) is left out");
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
        }
    }
    Ok(Some((meta, last)))
}

/// What `checkpoint.json` holds once the metadata lives in the Raft files: a checkpoint of a
/// format no earlier master reads, so one started on this directory (a downgrade) refuses to
/// start instead of serving empty metadata (and telling the chunkservers to delete every
/// replica it does not know).
pub(crate) const MOVED_MARKER: &str =
    "{\"format\":4,\"sequence\":0,\"logs\":[],\"chunks\":[],\"moved_to\":\"raft-snapshot\"}";

/// Removes the file-based operation log (once the group's snapshot holds its state) and leaves
/// [`MOVED_MARKER`] as `checkpoint.json`; does nothing on a directory already marked.
pub(crate) fn retire_legacy(disk: &DynDisk, dir: &Path) -> Result<()> {
    let marker = dir.join(checkpoint::FILE);
    if is_moved(disk, dir)? {
        return Ok(());
    }
    let had_log = match disk.remove_file(&dir.join(FILE)) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(dir.join(FILE))(e)),
    };
    for name in [TMP, checkpoint::TMP] {
        match disk.remove_file(&dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(dir.join(name))(e)),
        }
    }
    cairn_files::replace(disk, dir, checkpoint::FILE, MOVED_MARKER.as_bytes())
        .map_err(Error::io(&marker))?;
    if had_log {
        info!(dir = %dir.display(), "the old operation log was moved into the Raft snapshot and removed");
    }
    Ok(())
}

/// Entries waiting for the committer, numbered as they were queued.
#[derive(Debug)]
pub(crate) struct OplogQueue {
    next_sequence: u64,
    /// Each with its size as JSON.
    entries: std::collections::VecDeque<(Entry, usize)>,
}

impl OplogQueue {
    /// A queue whose first entry gets `last_sequence + 1`.
    pub(crate) fn new(last_sequence: u64) -> OplogQueue {
        OplogQueue {
            next_sequence: last_sequence + 1,
            entries: Default::default(),
        }
    }

    /// Queues `entry` and returns its sequence.
    pub(crate) fn push(&mut self, entry: &Entry) -> u64 {
        let sequence = self.next_sequence;
        let size = serde_json::to_vec(entry)
            .expect("entries always serialise to JSON")
            .len();
        self.entries.push_back((entry.clone(), size));
        self.next_sequence += 1;
        sequence
    }

    /// The sequence of the last entry queued.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Takes the oldest queued entries, [`PROPOSAL_BYTES_MAX`] of them at most (one Raft
    /// entry must fit a message between masters) and at least one; `more` says whether some
    /// are left. Call with the lock that orders `push` and metadata changes held, so the batch
    /// holds exactly the entries through its `last_sequence`, in order.
    pub(crate) fn take(&mut self) -> Batch {
        let mut entries = Vec::new();
        let mut bytes = 0;
        while let Some((_, size)) = self.entries.front() {
            if !entries.is_empty() && bytes + size > PROPOSAL_BYTES_MAX {
                break;
            }
            bytes += size;
            let (entry, _) = self.entries.pop_front().expect("looked at above");
            entries.push(entry);
        }
        let left = self.entries.len() as u64;
        Batch {
            entries,
            last_sequence: self.last_sequence() - left,
            more: left > 0,
        }
    }
}

/// What the committer proposes in one round.
#[derive(Debug)]
pub(crate) struct Batch {
    entries: Vec<Entry>,
    last_sequence: u64,
    /// Entries are left in the queue for the next round.
    more: bool,
}

/// How far the operation log is committed, and whether it broke.
#[derive(Clone, Debug, Default)]
pub(crate) struct Durable {
    sequence: u64,
    failed: Option<String>,
}

/// The handle on the committer task.
pub(crate) struct Committer {
    /// The node it proposes to (tests stop it with the core: `MasterCore::stop`).
    #[cfg(test)]
    raft: Raft<TypeConfig>,
    kick: Arc<Notify>,
    durable: watch::Receiver<Durable>,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("durable", &*self.durable.borrow())
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the committer proposing to `raft`, whose state machine holds everything through
    /// `last_sequence`. `take` is called with the metadata lock to collect each round's batch.
    pub(crate) fn spawn(
        raft: Raft<TypeConfig>,
        last_sequence: u64,
        take: impl FnMut() -> Batch + Send + 'static,
    ) -> Committer {
        let kick = Arc::new(Notify::new());
        let (durable_tx, durable) = watch::channel(Durable {
            sequence: last_sequence,
            failed: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(raft.clone(), take, kick.clone(), durable_tx, stop_rx));
        Committer {
            #[cfg(test)]
            raft,
            kick,
            durable,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Waits until entry `sequence` is committed.
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

    /// Why the log broke, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.durable.borrow().failed.clone()
    }

    /// Proposes what is queued and stops the task (Raft runs on: it is the node's, not this
    /// term's).
    pub(crate) async fn close(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.lock().await.take()
            && let Err(e) = task.await
        {
            error!(error = %e, "operation-log committer panicked");
        }
    }

    /// The Raft node it proposes to.
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    mut take: impl FnMut() -> Batch + Send + 'static,
    kick: Arc<Notify>,
    durable: watch::Sender<Durable>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = *stop.borrow() || {
            tokio::select! {
                _ = kick.notified() => false,
                _ = stop.changed() => true,
            }
        };
        let batch = take();
        if batch.more {
            kick.notify_one();
        }
        if !batch.entries.is_empty() {
            let proposal = Proposal {
                entries: batch.entries,
            };
            if let Err(e) = raft.client_write(proposal).await {
                // Not the leader any more, or Raft stopped: what this master applied ahead of
                // the group may never be committed, so it takes no more changes.
                error!(error = %e, "an operation-log proposal failed; the master accepts no more changes");
                durable.send_modify(|d| d.failed = Some(e.to_string()));
                return;
            }
            durable.send_modify(|d| d.sequence = batch.last_sequence);
        }
        if stopping && !batch.more {
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

    fn fs_disk() -> cairn_files::SharedDisk {
        cairn_files::shared(cairn_files::FsDisk)
    }

    // Proves: an old directory reads as checkpoint + the entries after it: entries the
    // checkpoint covers are skipped, later ones applied, a torn tail dropped; reading changes
    // nothing, and retiring removes both files. An empty directory has no legacy state.
    #[test]
    fn legacy_directories_read_checkpoint_plus_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_legacy(&*fs_disk(), dir.path()).unwrap().is_none());
        let mut covered = Metadata::default();
        covered.apply(&create("/a")).unwrap();
        std::fs::write(
            dir.path().join(checkpoint::FILE),
            checkpoint::encode(&covered, 1),
        )
        .unwrap();
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
        let (meta, last) = load_legacy(&*fs_disk(), dir.path()).unwrap().unwrap();
        assert_eq!(last, 3);
        assert_eq!(meta.chunks[&handle].version, ChunkVersion(2));
        assert_eq!(meta.chunks[&handle].state, ChunkState::Open);
        assert!(!meta.logs.contains_key("/torn"));
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            log,
            "read only"
        );
        retire_legacy(&*fs_disk(), dir.path()).unwrap();
        assert!(!dir.path().join(FILE).exists());
        // What is left is a checkpoint no earlier master reads (it refuses to start).
        let marker = std::fs::read(dir.path().join(checkpoint::FILE)).unwrap();
        assert_eq!(marker, MOVED_MARKER.as_bytes());
        let e = checkpoint::decode(&marker, Path::new("c")).unwrap_err();
        assert!(e.to_string().contains("unknown format 4"), "{e}");
        retire_legacy(&*fs_disk(), dir.path()).unwrap();
    }

    // A log that starts after the checkpoint's sequence means entries are missing: refuse.
    #[test]
    fn log_newer_than_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_oplog(dir.path(), &file(5, &[create("/a")]));
        assert!(matches!(
            load_legacy(&*fs_disk(), dir.path()),
            Err(Error::OplogCorrupt { .. })
        ));
    }
}

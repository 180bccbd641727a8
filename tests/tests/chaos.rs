//! The chaos suite (issue "Fault tolerance"; compound faults: issue 8): each test runs a real
//! cluster (1 master + 4 chunkservers, heartbeat 200 ms, dead after 1 s, 256 KiB chunks) with
//! eight sequential writers and one pipelined writer recording a JSONL history, injects one
//! kind of fault (or two at once) on a schedule it prints, heals, waits for full replication
//! and runs the checker: no acknowledged record lost, nothing unattempted read, no definitely
//! failed record read, duplicates only from retries and exactly once after dedupe, per-writer
//! order, no skipped range unless expected, later replays keep what earlier ones returned,
//! sealed replicas byte-identical, every record's hash intact; read-after-ack (R): every replay
//! started at a fault (and the tails) returns every record acknowledged before it began, or
//! fails loudly; nothing a reader returned is gone later (G); and every tail catches up with
//! every acknowledged record after healing (T). Faults on the open chunk are dealt with the
//! writers frozen and confirmed by the chunk's seal. Every scenario prints its seed (rerun with
//! `CAIRN_TESTS_SEED`). The fault matrix: `docs/testing.md`.

#[path = "chaos/harness.rs"]
mod harness;

use std::time::Duration;

use cairn_record::limits::{CHUNK_HEADER_BYTES, FRAME_HEADER_BYTES};
use cairn_tests::Role;
use cairn_tests::damage::flip_byte;
use harness::{Chaos, ChaosOpts};

const ACKS: Duration = Duration::from_secs(60);

/// Proves row 1: SIGKILL of a secondary of the open chunk during appends (three times, each
/// restarted 2 s later) loses nothing acknowledged; clients seal the chunk on the two replicas
/// left (confirmed in the master's log) and move on.
#[test]
fn kill_a_secondary() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("kill_secondary", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    for round in 1..=3 {
        let (handle, _, secondaries) = chaos.freeze_on_open_chunk();
        let victim = secondaries[0];
        chaos.cluster.kill(Role::Chunkserver(victim));
        chaos.fault(format!(
            "round {round}: SIGKILL secondary chunkserver {victim} of open chunk {handle}"
        ));
        chaos.thaw();
        chaos.assert_sealed(&handle, Some(2), ACKS);
        chaos.wait_acks(1000, ACKS);
        std::thread::sleep(Duration::from_secs(2));
        chaos.fault(format!("round {round}: restart chunkserver {victim}"));
        chaos.cluster.start_server(Role::Chunkserver(victim));
        chaos.wait_acks(1000, ACKS);
    }
    chaos.finish();
}

/// Proves row 2: SIGKILL of the open chunk's primary during appends (three times) loses
/// nothing acknowledged: the chunk is sealed at the longest fenced length among the two
/// secondaries (confirmed in the master's log) and the clients retry on the next chunk.
#[test]
fn kill_the_primary() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("kill_primary", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    for round in 1..=3 {
        let (handle, primary, _) = chaos.freeze_on_open_chunk();
        chaos.cluster.kill(Role::Chunkserver(primary));
        chaos.fault(format!(
            "round {round}: SIGKILL primary chunkserver {primary} of open chunk {handle}"
        ));
        chaos.thaw();
        chaos.assert_sealed(&handle, Some(2), ACKS);
        chaos.wait_acks(1000, ACKS);
        std::thread::sleep(Duration::from_secs(2));
        chaos.fault(format!("round {round}: restart chunkserver {primary}"));
        chaos.cluster.start_server(Role::Chunkserver(primary));
        chaos.wait_acks(1000, ACKS);
    }
    chaos.finish();
}

/// Proves row 3: SIGKILL of the master (three times, restarted after 0.5 s) during appends and
/// the rolls they cause loses no acknowledged record and no metadata; appends resume.
#[test]
fn kill_the_master() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("kill_master", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    for round in 1..=3 {
        chaos.fault(format!("round {round}: SIGKILL the master"));
        chaos.cluster.kill(Role::Master);
        std::thread::sleep(Duration::from_millis(500));
        chaos.fault(format!("round {round}: restart the master"));
        chaos.cluster.start_server(Role::Master);
        chaos.wait_acks(300, ACKS);
    }
    chaos.finish();
}

/// Proves row 15: a power cut of one chunkserver (power-cut mode: its unsynced writes are lost
/// with the process) loses nothing acknowledged, since acknowledgements follow fsyncs.
#[test]
fn power_cut_of_one_chunkserver() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        power_cut: true,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("power_cut_one", opts);
    chaos.wait_acks(300, ACKS);
    for round in 1..=2 {
        let (handle, primary, secondaries) = chaos.freeze_on_open_chunk();
        let victim = if round == 1 { primary } else { secondaries[0] };
        chaos.cluster.kill(Role::Chunkserver(victim));
        chaos.fault(format!(
            "round {round}: power cut of chunkserver {victim}, a replica of open chunk {handle}"
        ));
        chaos.thaw();
        chaos.assert_sealed(&handle, Some(2), ACKS);
        chaos.wait_acks(1000, ACKS);
        chaos.fault(format!("round {round}: power back on chunkserver {victim}"));
        chaos.cluster.start_server(Role::Chunkserver(victim));
        chaos.wait_acks(1000, ACKS);
    }
    harness::assert_power_cut_mode(&chaos.cluster);
    chaos.finish();
}

/// Proves row 16: a correlated power cut of every chunkserver and the master at once loses no
/// acknowledged record, and the cluster restarts without help.
#[test]
fn power_cut_of_everything() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        power_cut: true,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("power_cut_all", opts);
    chaos.wait_acks(500, ACKS);
    chaos.fault("power cut of the master and all 4 chunkservers at once");
    chaos.cluster.kill(Role::Master);
    for i in 0..4 {
        chaos.cluster.kill(Role::Chunkserver(i));
    }
    std::thread::sleep(Duration::from_secs(1));
    chaos.fault("power back: master and chunkservers start");
    chaos.cluster.start_server(Role::Master);
    for i in 0..4 {
        chaos.cluster.start_server(Role::Chunkserver(i));
    }
    harness::assert_power_cut_mode(&chaos.cluster);
    chaos.wait_acks(300, ACKS);
    chaos.finish();
}

/// Proves row 4: a primary paused (SIGSTOP) past the failure detector while the clients time
/// out, seal its chunk through the master and move on gets no acknowledgement for anything it
/// handles after resuming (its secondaries refuse its old version), and nothing is lost.
#[test]
fn pause_the_primary_while_its_chunk_is_sealed() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("pause_primary", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    let (handle, primary, _) = chaos.freeze_on_open_chunk();
    chaos.cluster.pause(Role::Chunkserver(primary));
    chaos.fault(format!(
        "SIGSTOP primary chunkserver {primary} of open chunk {handle}"
    ));
    chaos.thaw();
    // The clients' appends to it time out; they seal it on the secondaries and go on elsewhere.
    chaos.assert_sealed(&handle, Some(2), Duration::from_secs(90));
    chaos.wait_acks(300, Duration::from_secs(90));
    chaos.fault(format!("SIGCONT chunkserver {primary}"));
    chaos.cluster.resume(Role::Chunkserver(primary));
    chaos.wait_acks(300, ACKS);
    chaos.finish();
}

/// Proves row 33: a chunkserver whose data directory is wiped while it is down rejoins empty,
/// is never counted as holding its old chunks, and the master re-replicates them.
#[test]
fn wiped_data_directory() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("wiped_data_dir", ChaosOpts::default());
    chaos.wait_acks(800, ACKS);
    let victim = 1;
    chaos.fault(format!(
        "SIGKILL chunkserver {victim} and wipe its data directory"
    ));
    chaos.cluster.kill(Role::Chunkserver(victim));
    let dir = chaos.cluster.data_dir(Role::Chunkserver(victim)).to_owned();
    std::fs::remove_dir_all(&dir).expect("wipe");
    std::fs::create_dir_all(&dir).expect("recreate");
    chaos.wait_acks(1000, ACKS);
    chaos.fault(format!("restart chunkserver {victim} empty"));
    chaos.cluster.start_server(Role::Chunkserver(victim));
    chaos.wait_acks(300, ACKS);
    chaos.finish();
}

/// Waits until the three replica files of chunk `handle` are byte-identical again (repaired).
fn wait_repaired(chaos: &Chaos, handle: &str, what: &str) {
    cairn_tests::wait_until(what, Duration::from_secs(60), || {
        let files: Vec<Vec<u8>> = (0..4)
            .filter_map(|i| std::fs::read(chaos.chunk_file(i, handle)).ok())
            .collect();
        let stat = chaos.cluster.stat(&chaos.log);
        let listed = stat
            .chunks
            .iter()
            .find(|c| c.handle == handle)
            .map_or(0, |c| c.replicas.len());
        let same = files.windows(2).all(|w| w[0] == w[1]);
        (files.len() >= 3 && same && listed >= 3).then_some(())
    });
}

/// Proves rows 10 and 11: one flipped bit in a record's payload, and one in a frame header,
/// each on one replica of a sealed chunk (live, under the running chunkserver), are detected by
/// the scrubber, never returned (reads fail over to a good replica), and repaired: the bad
/// replica is replaced by a verified copy, so all replicas end byte-identical.
#[test]
fn flipped_bits_on_one_replica_are_detected_and_repaired() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("bit_flips", ChaosOpts::default());
    chaos.wait_acks(3000, ACKS);
    let sealed = chaos.sealed_chunks();
    assert!(sealed.len() >= 2, "need two sealed chunks: {sealed:?}");
    let (a, _, a_holders) = &sealed[0];
    let (b, _, b_holders) = &sealed[1];
    // The first frame follows the chunk header; its payload follows the frame header.
    let payload_byte = (CHUNK_HEADER_BYTES + FRAME_HEADER_BYTES + 7) as u64;
    let header_byte = (CHUNK_HEADER_BYTES + 12) as u64;
    chaos.fault(format!(
        "flip a payload bit of chunk {a} on chunkserver {}",
        a_holders[0]
    ));
    flip_byte(&chaos.chunk_file(a_holders[0], a), payload_byte);
    chaos.fault(format!(
        "flip a header bit of chunk {b} on chunkserver {}",
        b_holders[1]
    ));
    flip_byte(&chaos.chunk_file(b_holders[1], b), header_byte);
    wait_repaired(&chaos, a, "the payload flip repaired");
    chaos.fault(format!("chunk {a}: replicas identical again"));
    wait_repaired(&chaos, b, "the header flip repaired");
    chaos.fault(format!("chunk {b}: replicas identical again"));
    let detected = (0..4)
        .map(|i| {
            chaos
                .cluster
                .server_stderr(Role::Chunkserver(i))
                .matches("scrub found a corrupt replica")
                .count()
        })
        .sum::<usize>();
    eprintln!(
        "chaos bit_flips: corruptions injected 2, detected by the scrubber {detected}, repaired 2"
    );
    assert!(
        detected >= 2,
        "the scrubber reported {detected} of 2 corruptions"
    );
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves row 13: truncating a sealed replica (while its chunkserver is down) is corruption,
/// not a torn tail: the replica is not used, the chunk keeps its length cluster-wide, and the
/// replica is repaired; truncating the open chunk's replica on a stopped secondary cuts only
/// that replica's tail (the clients' seal, at the longest fenced length, happens without it),
/// and every acknowledged record is kept.
///
/// The two faults hit different chunks, one after the other; stacked on one chunk they are
/// [`truncation_stacked_on_the_open_chunk`].
#[test]
fn truncated_replicas_never_shorten_a_chunk() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("truncation", ChaosOpts::default());
    chaos.wait_acks(3000, ACKS);
    // 1. A secondary of the open chunk stops; its replica of that chunk loses 3000 bytes.
    let (open_handle, _, secondaries) = chaos.open_chunk();
    let open_victim = secondaries[0];
    chaos.fault(format!(
        "stop chunkserver {open_victim}; cut 3000 bytes off its replica of open chunk {open_handle}"
    ));
    chaos.cluster.kill(Role::Chunkserver(open_victim));
    let path = chaos.chunk_file(open_victim, &open_handle);
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size.saturating_sub(3000).max(32)).unwrap();
    chaos.cluster.start_server(Role::Chunkserver(open_victim));
    chaos.fault(format!("chunkserver {open_victim} restarted"));
    chaos.wait_acks(1000, ACKS);
    // 2. Another chunkserver stops; one of its sealed replicas (of another chunk) loses 100
    //    bytes.
    let sealed = chaos.sealed_chunks();
    let (a, len, victim) = sealed
        .iter()
        .filter(|(h, _, _)| *h != open_handle)
        .find_map(|(h, len, holders)| {
            holders
                .iter()
                .find(|&&i| i != open_victim)
                .map(|&i| (h.clone(), *len, i))
        })
        .expect("a sealed chunk on another chunkserver");
    chaos.fault(format!(
        "stop chunkserver {victim}; cut 100 bytes off sealed chunk {a}"
    ));
    chaos.cluster.kill(Role::Chunkserver(victim));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(chaos.chunk_file(victim, &a))
        .unwrap();
    f.set_len(len - 100).unwrap();
    chaos.cluster.start_server(Role::Chunkserver(victim));
    chaos.fault(format!("chunkserver {victim} restarted"));
    wait_repaired(&chaos, &a, "the truncated sealed replica repaired");
    let after = chaos.cluster.stat(&chaos.log);
    let chunk = after.chunks.iter().find(|c| c.handle == a).unwrap();
    assert_eq!(chunk.length, len, "the sealed length never changes");
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves row 13 with the faults stacked on one chunk (a scenario that once found a chunk left
/// with no good replica): the open chunk's primary is killed and a secondary is stopped with 3000
/// bytes cut off its replica of that chunk, so the clients seal the chunk on the one secondary
/// left (confirmed: sealed on 1 replica); then that only sealed replica is cut by 100 bytes
/// while its chunkserver is down, and all three come back. The replicas that missed the seal
/// (the old primary's whole stream, the cut secondary's prefix) still hold every acknowledged
/// record: the chunk must never be cut back (it keeps its sealed length, and replay reports no
/// skipped range), must be readable and repaired to three identical replicas, replay must
/// return every acknowledged record, and readers started during the faults must hold every
/// earlier ack (R).
///
/// This scenario found a real bug: the damaged sealer still reported its replica, so the master
/// did not salvage, and repair copied only from a good replica, of which there was none; every
/// replay failed after 30 s although the old primary held every byte. The master now seals in
/// place a replica that missed the seal and holds the whole sealed length.
#[test]
fn truncation_stacked_on_the_open_chunk() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("truncation_stacked", ChaosOpts::default());
    chaos.wait_acks(2000, ACKS);
    let (handle, primary, secondaries) = chaos.freeze_on_open_chunk();
    let (cut, sealer) = (secondaries[0], secondaries[1]);
    chaos.cluster.kill(Role::Chunkserver(primary));
    chaos.cluster.kill(Role::Chunkserver(cut));
    let path = chaos.chunk_file(cut, &handle);
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size.saturating_sub(3000).max(32)).unwrap();
    drop(f);
    chaos.fault(format!(
        "SIGKILL primary chunkserver {primary} of open chunk {handle}; stop chunkserver {cut} \
         and cut its replica from {size} to {} bytes",
        size.saturating_sub(3000).max(32)
    ));
    chaos.thaw();
    chaos.assert_sealed(&handle, Some(1), ACKS);
    let len = chaos
        .cluster
        .stat(&chaos.log)
        .chunks
        .into_iter()
        .find(|c| c.handle == handle)
        .map(|c| c.length)
        .expect("the sealed chunk");
    chaos.cluster.kill(Role::Chunkserver(sealer));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(chaos.chunk_file(sealer, &handle))
        .unwrap();
    f.set_len(len - 100).unwrap();
    drop(f);
    chaos.fault(format!(
        "stop chunkserver {sealer}, the only sealed replica of chunk {handle}, and cut it from \
         {len} to {} bytes",
        len - 100
    ));
    for i in [sealer, cut, primary] {
        chaos.cluster.start_server(Role::Chunkserver(i));
    }
    chaos.fault(format!(
        "chunkservers {sealer}, {cut} and {primary} restarted"
    ));
    chaos.wait_acks(1000, ACKS);
    let after = chaos.cluster.stat(&chaos.log);
    let chunk = after.chunks.iter().find(|c| c.handle == handle).unwrap();
    assert_eq!(chunk.length, len, "the sealed length never changes");
    chaos.finish();
}

/// Proves row 21: a chunkserver that was down while the log moved on (seals raised versions,
/// chunks were re-replicated) comes back with stale replicas that are never read or copied
/// from, and are deleted.
#[test]
fn stale_replicas_return_and_are_deleted() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("stale_replica", ChaosOpts::default());
    chaos.wait_acks(1000, ACKS);
    let (handle, primary, _) = chaos.freeze_on_open_chunk();
    chaos.cluster.kill(Role::Chunkserver(primary));
    chaos.fault(format!(
        "SIGKILL chunkserver {primary} (primary of open chunk {handle})"
    ));
    chaos.thaw();
    chaos.assert_sealed(&handle, Some(2), ACKS);
    chaos.wait_acks(3000, ACKS);
    chaos.fault(format!(
        "restart chunkserver {primary} with its stale replicas"
    ));
    chaos.cluster.start_server(Role::Chunkserver(primary));
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves row 6: with the primary cut off from both secondaries (proxies blackhole them) while
/// clients still reach it, nothing is acknowledged through it; after healing, appends resume
/// and nothing acknowledged is lost.
#[test]
fn primary_cut_off_from_its_secondaries() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        proxied: true,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("partition_primary", opts);
    chaos.wait_acks(1000, ACKS);
    let (handle, primary, secondaries) = chaos.freeze_on_open_chunk();
    for &s in &secondaries {
        chaos
            .cluster
            .proxy(Role::Chunkserver(s))
            .set(cairn_tests::Mode::Blackhole);
    }
    chaos.fault(format!(
        "blackhole chunkservers {secondaries:?} (the secondaries of primary {primary}, open \
         chunk {handle})"
    ));
    chaos.thaw();
    std::thread::sleep(Duration::from_secs(4));
    chaos.fault("heal: pass, and cut the held connections");
    for &s in &secondaries {
        let p = chaos.cluster.proxy(Role::Chunkserver(s));
        p.set(cairn_tests::Mode::Pass);
        p.cut_all();
    }
    // The cut-off chunk was sealed (the primary could not forward), not merely left behind.
    chaos.assert_sealed(&handle, None, Duration::from_secs(90));
    chaos.wait_acks(1000, Duration::from_secs(90));
    chaos.finish();
}

/// Proves rows 24 and 28: a client process killed mid-append (SIGKILL while it has records in
/// flight) leaves no partial record visible and nothing it had acknowledged is lost; garbage
/// and a half-sent HTTP/2 preface on every gRPC port during the run break nothing.
#[test]
fn client_killed_mid_append_and_garbage_on_every_port() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("client_killed", ChaosOpts::default());
    chaos.wait_acks(500, ACKS);
    let w = 900;
    let lines: Vec<Vec<u8>> = (1..=20_000u64)
        .map(|seq| cairn_tests::Payload::new(w, seq, 0, vec![seq as u8; 300]).encode_text())
        .collect();
    for seq in 1..=lines.len() as u64 {
        chaos.history().invoke(w, seq, 0);
    }
    let mut running = chaos
        .cluster
        .spawn_append(&chaos.log, &lines, Duration::from_secs(120));
    let acks = cairn_tests::contract::read_acks(&mut running, 2000, ACKS);
    chaos.fault(format!(
        "SIGKILL the CLI appender after {} acknowledgements",
        acks.len()
    ));
    // The output holds every acknowledgement it printed, those read above included.
    let out = running.kill();
    let acked = cairn_tests::contract::parse_acks(&out);
    assert!(acked.len() >= acks.len());
    let mut seen = std::collections::HashSet::new();
    for a in &acked {
        let seq = a.line;
        seen.insert(seq);
        chaos.history().ok(
            w,
            seq,
            0,
            (a.chunk, a.offset),
            Some((a.writer.clone(), a.sequence)),
        );
    }
    for seq in 1..=lines.len() as u64 {
        if !seen.contains(&seq) {
            chaos
                .history()
                .info(w, seq, 0, "the client process was killed");
        }
    }
    chaos.fault("garbage and a half-sent preface on every gRPC port");
    let mut rng = cairn_tests::workload::Rng::new(7);
    for (name, addr) in chaos.cluster.grpc_addrs() {
        let junk = cairn_tests::garbage::random_bytes(64 << 10, &mut rng);
        let _ = cairn_tests::garbage::send(addr, &junk, true);
        let _ = cairn_tests::garbage::send(addr, &cairn_tests::garbage::H2_PREFACE[..10], false);
        eprintln!("chaos client_killed: garbage sent to {name}");
    }
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves row 26 at a scale this machine takes: 500 concurrent sequential writers, each with
/// its own appender, for a short run: every acknowledged record is stored once and in order.
#[test]
fn five_hundred_concurrent_appenders() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        writers: 500,
        body: (32, 256),
        ..ChaosOpts::default()
    };
    let chaos = Chaos::start("five_hundred", opts);
    chaos.wait_acks(10_000, Duration::from_secs(120));
    chaos.finish();
}

/// Proves that acknowledgements held back past the client's append timeout (the primary's
/// answers delayed 12 s by its proxy) make clients give up on that chunk, seal it and resend on
/// the next one; the resent records were already stored: those under the commit offset the
/// seal's carried marks cover are answered "already stored" by the new primary, the others are
/// stored again. Each record is in the log once after dedupe, and duplicates come only from
/// retries.
#[test]
fn acknowledgements_delayed_past_the_client_timeout() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        proxied: true,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("ack_delayed", opts);
    chaos.wait_acks(1000, ACKS);
    let (handle, primary, _) = chaos.freeze_on_open_chunk();
    chaos
        .cluster
        .proxy(Role::Chunkserver(primary))
        .set_direction(
            cairn_tests::Direction::ServerToClient,
            cairn_tests::Mode::Delay(Duration::from_secs(12)),
        );
    chaos.fault(format!(
        "delay every answer of primary chunkserver {primary} (open chunk {handle}) by 12 s (the \
         client waits 10 s)"
    ));
    chaos.thaw();
    chaos.assert_sealed(&handle, None, Duration::from_secs(90));
    chaos.wait_acks(500, Duration::from_secs(90));
    chaos.fault("answers flow again");
    let p = chaos.cluster.proxy(Role::Chunkserver(primary));
    p.set(cairn_tests::Mode::Pass);
    p.cut_all();
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves row 2's crash point: a primary that dies between its local write and its forwards
/// (it aborts itself there, after its 300th write as a primary) never acknowledged that batch;
/// the clients seal and resend it elsewhere; the dead primary's replica, possibly longer than
/// the sealed length, comes back stale and is never read; nothing acknowledged is lost.
#[test]
fn primary_dies_between_its_local_write_and_its_forwards() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("abort_before_forward", ChaosOpts::default());
    chaos.wait_acks(500, ACKS);
    let (primary, _) = chaos.open_chunk_roles();
    chaos.fault(format!(
        "restart chunkserver {primary} with --test-abort-before-forward-after 300"
    ));
    chaos
        .cluster
        .restart_chunkserver_with(primary, &["--test-abort-before-forward-after", "300"]);
    let role = Role::Chunkserver(primary);
    cairn_tests::wait_until(
        "the chunkserver to abort before a forward",
        Duration::from_secs(90),
        || {
            chaos
                .cluster
                .server_stderr(role)
                .contains("aborting between the local write and the forwards")
                .then_some(())
        },
    );
    chaos.fault(format!(
        "chunkserver {primary} aborted between a local write and its forwards"
    ));
    chaos.wait_acks(1000, ACKS);
    chaos.cluster.kill(role);
    chaos.fault(format!(
        "restart chunkserver {primary} without the test mode"
    ));
    chaos
        .cluster
        .restart_chunkserver_with(primary, &[] as &[&str]);
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

// ---- Compound faults (issue 8): two faults at once on one chunk, readers started at once ----

/// The chunkserver indices holding `handle`'s replicas, from the current `stat`.
fn holders_of(chaos: &Chaos, handle: &str) -> Vec<usize> {
    let stat = chaos.cluster.stat(&chaos.log);
    stat.chunks
        .iter()
        .find(|c| c.handle == handle)
        .map(|c| {
            c.replicas
                .iter()
                .map(|a| chaos.cluster.chunkserver_index(a))
                .collect()
        })
        .unwrap_or_default()
}

/// Proves item 1 under load: with 5 chunkservers, both secondaries of the open chunk paused
/// (SIGSTOP) while clients keep appending, then the primary lost (SIGKILL, data directory
/// wiped) and the secondaries resumed, loses nothing acknowledged: no record was acknowledged
/// on the primary alone, the chunk is read and re-replicated from the replicas holding its
/// acknowledged prefix, and readers started during the faults return every earlier ack (R).
#[test]
fn two_secondaries_paused_then_the_primary_lost() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        chunkservers: 5,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("paused_secondaries_lost_primary", opts);
    // The chunk sealed on the primary alone is salvaged from the secondaries: what only the
    // primary had (never acknowledged) is reported as skipped.
    chaos.expect_salvage();
    chaos.wait_acks(300, ACKS);
    let (handle, primary, secondaries) = chaos.freeze_on_open_chunk();
    for &s in &secondaries {
        chaos.cluster.pause(Role::Chunkserver(s));
    }
    chaos.fault(format!(
        "SIGSTOP chunkservers {secondaries:?} (both secondaries of open chunk {handle})"
    ));
    chaos.thaw();
    // Clients seal and go on with the three live chunkservers. Kill the primary at the first
    // acknowledgement after the seal, before the master's repair copies the chunk.
    chaos.wait_sealed_then_ack(&handle, Duration::from_secs(60));
    chaos.cluster.kill(Role::Chunkserver(primary));
    let chunk = chaos
        .cluster
        .stat(&chaos.log)
        .chunks
        .into_iter()
        .find(|c| c.handle == handle);
    chaos.fault(format!(
        "SIGKILL chunkserver {primary} (the primary) at the first ack after the pause and wipe \
         its data directory; chunk {handle} was then {chunk:?}"
    ));
    let dir = chaos
        .cluster
        .data_dir(Role::Chunkserver(primary))
        .to_owned();
    std::fs::remove_dir_all(&dir).expect("wipe");
    std::fs::create_dir_all(&dir).expect("recreate");
    // The seal the scenario is about: on the primary alone, the secondaries being paused.
    chaos.assert_sealed(&handle, Some(1), ACKS);
    chaos.fault(format!("SIGCONT chunkservers {secondaries:?}"));
    for &s in &secondaries {
        chaos.cluster.resume(Role::Chunkserver(s));
    }
    chaos.wait_acks(300, Duration::from_secs(90));
    chaos.fault(format!("restart chunkserver {primary} empty"));
    chaos.cluster.start_server(Role::Chunkserver(primary));
    chaos.finish();
}

/// Proves item 2 under load: the open chunk's primary killed right after the last
/// acknowledgement (writers stopped first), with the master's failure detection slow (dead
/// after 10 s): a replay started at once, a tail that was already running and one started at
/// once return every acknowledged record (R), without waiting for the master to notice.
#[test]
fn primary_killed_right_after_the_last_ack() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        dead_after_ms: 10_000,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("primary_killed_after_last_ack", opts);
    chaos.spawn_tail("tail running before the kill");
    chaos.wait_acks(2000, ACKS);
    chaos.stop_writers();
    // The open chunk once no seal is under way (a stopped writer's full chunk may be sealed a
    // moment later): the same chunk in two stats 300 ms apart.
    let (handle, primary) = cairn_tests::wait_until(
        "the open chunk to stay put",
        Duration::from_secs(10),
        || {
            let (first, primary, _) = chaos.open_chunk();
            std::thread::sleep(Duration::from_millis(300));
            let (again, _, _) = chaos.open_chunk();
            (first == again).then_some((first, primary))
        },
    );
    chaos.cluster.kill(Role::Chunkserver(primary));
    // `fault` starts the immediate replay (and a tail).
    chaos.fault(format!(
        "writers stopped; SIGKILL chunkserver {primary}, primary of open chunk {handle}"
    ));
    std::thread::sleep(Duration::from_secs(3));
    chaos.spawn_replay("replay 3 s after the kill");
    // Sealed without the dead primary within 3 s of the last replay's start, long before the
    // master's failure detector (10 s) could act: clients or readers had it sealed (a reader
    // asks with PRIMARY_UNREACHABLE; a chunk already full may be sealed as such first).
    chaos.assert_sealed(&handle, Some(2), Duration::from_secs(3));
    chaos.fault(format!("restart chunkserver {primary}"));
    chaos.cluster.start_server(Role::Chunkserver(primary));
    chaos.finish();
}

/// Proves that a master killed after logging a seal's new version and before its fences were
/// answered (both secondaries paused, so the fences hang) loses nothing: restarted, it never
/// hands that version out twice, the chunk is sealed and the log moves on once the secondaries
/// resume, and readers started meanwhile return every earlier ack (R).
#[test]
fn master_killed_between_a_version_and_its_fences() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("master_killed_mid_seal", ChaosOpts::default());
    chaos.wait_acks(500, ACKS);
    let (handle, _, secondaries) = chaos.freeze_on_open_chunk();
    let seals_before = chaos
        .cluster
        .server_stderr(Role::Master)
        .matches("sealing chunk")
        .count();
    for &s in &secondaries {
        chaos.cluster.pause(Role::Chunkserver(s));
    }
    chaos.fault(format!(
        "SIGSTOP chunkservers {secondaries:?} (secondaries of open chunk {handle}): fences hang"
    ));
    chaos.thaw();
    cairn_tests::wait_until(
        "the master to log a seal's new version",
        Duration::from_secs(30),
        || {
            (chaos
                .cluster
                .server_stderr(Role::Master)
                .matches("sealing chunk")
                .count()
                > seals_before)
                .then_some(())
        },
    );
    chaos.cluster.kill(Role::Master);
    chaos.fault("SIGKILL the master right after it logged a new version, fences in flight");
    std::thread::sleep(Duration::from_millis(500));
    chaos.fault("restart the master");
    chaos.cluster.start_server(Role::Master);
    std::thread::sleep(Duration::from_secs(1));
    chaos.fault(format!("SIGCONT chunkservers {secondaries:?}"));
    for &s in &secondaries {
        chaos.cluster.resume(Role::Chunkserver(s));
    }
    // The seal that was cut short is finished (by a client or the master's repair pass).
    chaos.assert_sealed(&handle, None, Duration::from_secs(90));
    chaos.wait_acks(500, Duration::from_secs(90));
    chaos.finish();
}

/// Proves item 5 under load: a sealed replica truncated under its running chunkserver
/// (scrubbing off, so readers meet the cut first), then read by replays and by `cairn fsck`
/// (which reads every replica), kills no server; the short replica is found and replaced (all
/// replicas identical again within 60 s), and readers return every earlier ack (R).
#[test]
fn truncated_sealed_replica_under_a_running_chunkserver() {
    let _serial = cairn_tests::serial();
    // Scrubbing off (only the pass at startup): the readers, not the scrubber, meet the cut.
    let opts = ChaosOpts {
        scrub: false,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("truncated_live", opts);
    chaos.wait_acks(3000, ACKS);
    let sealed = chaos.sealed_chunks();
    let (a, len, holders) = sealed.first().cloned().expect("a sealed chunk");
    let victim = holders[0];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(chaos.chunk_file(victim, &a))
        .expect("open the replica");
    // Half the file: whole pages past the new end (a mapped read there is a SIGBUS).
    f.set_len(len / 2).expect("truncate");
    drop(f);
    chaos.fault(format!(
        "cut sealed chunk {a} ({len} bytes) to {} on running chunkserver {victim}",
        len / 2
    ));
    let fsck = chaos
        .cluster
        .cairn(&["fsck", &chaos.log])
        .timeout(Duration::from_secs(60))
        .run();
    chaos.fault(format!(
        "fsck read every replica: exit {:?}",
        fsck.status.code()
    ));
    chaos.cluster.assert_running();
    wait_repaired(&chaos, &a, "the truncated sealed replica replaced");
    chaos.fault(format!("chunk {a}: replicas identical again"));
    chaos.cluster.assert_running();
    chaos.wait_acks(1000, ACKS);
    chaos.finish();
}

/// Proves item 6 under load: when a sealed chunk loses a replica and the replica the master
/// first picks as the copy source is corrupt (a flipped payload bit nobody has noticed:
/// scrubbing is off), the chunk is still re-replicated from its healthy replica within 30 s
/// (a failed copy rotates the source). Then the corrupt replica's chunkserver restarts with
/// scrubbing on, finds it and has it replaced; readers return every earlier ack (R).
#[test]
fn corrupt_repair_source() {
    let _serial = cairn_tests::serial();
    let opts = ChaosOpts {
        scrub: false,
        ..ChaosOpts::default()
    };
    let mut chaos = Chaos::start("corrupt_repair_source", opts);
    chaos.wait_acks(3000, ACKS);
    let sealed = chaos.sealed_chunks();
    let (a, _, holders) = sealed.first().cloned().expect("a sealed chunk");
    let lost = holders[2];
    // The master picks source = good[handle % good.len()], good sorted by address: corrupt
    // exactly that one, so the first copy fails.
    let mut remaining: Vec<usize> = holders[..2].to_vec();
    remaining.sort_by_key(|&i| chaos.cluster.chunkserver_addr(i));
    let handle = u64::from_str_radix(&a, 16).expect("a hex handle");
    let source = remaining[(handle % 2) as usize];
    let healthy = remaining[1 - (handle % 2) as usize];
    chaos.fault(format!(
        "flip a payload bit of sealed chunk {a} on chunkserver {source} (no scrubbing)"
    ));
    flip_byte(
        &chaos.chunk_file(source, &a),
        (CHUNK_HEADER_BYTES + FRAME_HEADER_BYTES + 7) as u64,
    );
    chaos.fault(format!(
        "SIGKILL chunkserver {lost}, a third replica of chunk {a}"
    ));
    chaos.cluster.kill(Role::Chunkserver(lost));
    let target = (0..4)
        .find(|i| !holders.contains(i))
        .expect("a fourth chunkserver");
    let healthy_bytes = std::fs::read(chaos.chunk_file(healthy, &a)).expect("healthy replica");
    cairn_tests::wait_until(
        "the chunk copied to the fourth chunkserver from its healthy replica",
        Duration::from_secs(30),
        || {
            let copied = std::fs::read(chaos.chunk_file(target, &a)).ok()?;
            (copied == healthy_bytes && holders_of(&chaos, &a).contains(&target)).then_some(())
        },
    );
    let failed_copies = chaos
        .cluster
        .server_stderr(Role::Master)
        .matches("copying a replica failed")
        .count();
    chaos.fault(format!(
        "chunk {a} re-replicated onto chunkserver {target} ({failed_copies} failed copies logged)"
    ));
    chaos.cluster.start_server(Role::Chunkserver(lost));
    chaos.fault(format!(
        "chunkserver {lost} back; restart chunkserver {source} with scrubbing on"
    ));
    chaos
        .cluster
        .restart_chunkserver_with(source, &["--scrub-interval-ms", "500"]);
    wait_repaired(&chaos, &a, "the corrupt source found and replaced");
    chaos.wait_acks(500, ACKS);
    chaos.finish();
}

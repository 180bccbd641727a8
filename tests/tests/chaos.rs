//! The chaos suite (RELIABILITY.md §4–§5, issue "Fault tolerance"): each test runs a real
//! cluster (1 master + 4 chunkservers, heartbeat 200 ms, dead after 1 s, 256 KiB chunks) with
//! eight sequential writers and one pipelined writer recording a JSONL history, injects one
//! kind of fault on a schedule it prints, heals, waits for full replication and runs the
//! checker: no acknowledged record lost, nothing unattempted read, no definitely failed record
//! read, duplicates only from retries and exactly once after dedupe, per-writer order, later
//! replays keep what earlier ones returned, sealed replicas byte-identical, every record's hash
//! intact. Every scenario prints its seed (rerun with `CAIRN_TESTS_SEED`).

#[path = "chaos/harness.rs"]
mod harness;

use std::time::Duration;

use cairn_tests::Role;
use harness::{Chaos, ChaosOpts};

const ACKS: Duration = Duration::from_secs(60);

/// Proves row 1: SIGKILL of a secondary of the open chunk during appends (three times, each
/// restarted 2 s later) loses nothing acknowledged; clients seal and move on.
#[test]
fn kill_a_secondary() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("kill_secondary", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    for round in 1..=3 {
        let (_, secondaries) = chaos.open_chunk_roles();
        let victim = secondaries[0];
        chaos.fault(format!(
            "round {round}: SIGKILL secondary chunkserver {victim}"
        ));
        chaos.cluster.kill(Role::Chunkserver(victim));
        chaos.wait_acks(200, ACKS);
        std::thread::sleep(Duration::from_secs(2));
        chaos.fault(format!("round {round}: restart chunkserver {victim}"));
        chaos.cluster.start_server(Role::Chunkserver(victim));
        chaos.wait_acks(200, ACKS);
    }
    chaos.finish();
}

/// Proves row 2: SIGKILL of the open chunk's primary during appends (three times) loses
/// nothing acknowledged: the client seals at the longest fenced length among the secondaries
/// and retries on the next chunk.
#[test]
fn kill_the_primary() {
    let _serial = cairn_tests::serial();
    let mut chaos = Chaos::start("kill_primary", ChaosOpts::default());
    chaos.wait_acks(300, ACKS);
    for round in 1..=3 {
        let (primary, _) = chaos.open_chunk_roles();
        chaos.fault(format!(
            "round {round}: SIGKILL primary chunkserver {primary}"
        ));
        chaos.cluster.kill(Role::Chunkserver(primary));
        chaos.wait_acks(200, ACKS);
        std::thread::sleep(Duration::from_secs(2));
        chaos.fault(format!("round {round}: restart chunkserver {primary}"));
        chaos.cluster.start_server(Role::Chunkserver(primary));
        chaos.wait_acks(200, ACKS);
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
        let (primary, secondaries) = chaos.open_chunk_roles();
        let victim = if round == 1 { primary } else { secondaries[0] };
        chaos.fault(format!("round {round}: power cut of chunkserver {victim}"));
        chaos.cluster.kill(Role::Chunkserver(victim));
        chaos.wait_acks(200, ACKS);
        chaos.fault(format!("round {round}: power back on chunkserver {victim}"));
        chaos.cluster.start_server(Role::Chunkserver(victim));
        chaos.wait_acks(200, ACKS);
    }
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
    let (primary, _) = chaos.open_chunk_roles();
    chaos.fault(format!("SIGSTOP primary chunkserver {primary}"));
    chaos.cluster.pause(Role::Chunkserver(primary));
    // The clients' appends to it time out; they seal and go on elsewhere.
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
    chaos.wait_acks(200, ACKS);
    chaos.fault(format!("restart chunkserver {victim} empty"));
    chaos.cluster.start_server(Role::Chunkserver(victim));
    chaos.wait_acks(300, ACKS);
    chaos.finish();
}

//! `cairn tail` follows a log: records appended after it started show up, in order, across chunk
//! rolls.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use cairn_tests::{Cluster, ClusterOpts, LogOpts, workload};

/// Strips the line's `\n`.
fn payload(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line
}

/// Proves that `tail` sees records appended after it started, across chunk rolls: every one of
/// them, in append order, and nothing that was never appended.
///
/// How: a log of 16 KiB chunks with a few records in it; `cairn tail` is spawned and the test
/// appends single warm-up records until tail prints something (it is then following); it then
/// appends 300 records of 200–700 bytes (about ten chunk rolls, checked with `stat`) and reads
/// tail's stdout with a deadline until all 300 appeared. Tail may start at the beginning or at the
/// end of the log; the records appended after it started must all be there, first copies in order.
#[test]
fn tail_follows_appends_across_rolls() {
    let _serial = cairn_tests::serial();
    let started = Instant::now();
    let seed = workload::seed("tail_follows");
    let cluster = Cluster::start(3, ClusterOpts::default());
    let log = "/tail/roll";
    cluster.create_log(log, LogOpts::chunk_bytes(16 << 10));
    let size = |rng: &mut workload::Rng, _| rng.range(200, 700);
    let before = workload::lines("before", 5, seed, size);
    let mut known: HashSet<Vec<u8>> = before.iter().cloned().collect();
    cluster
        .append("before", log, before, Duration::from_secs(30))
        .assert_all_acked();

    let mut tail = cluster
        .cairn(&["tail", log])
        .timeout(Duration::from_secs(120))
        .spawn();
    let mut printed: Vec<Vec<u8>> = Vec::new();
    // Warm up: until tail prints anything, it may not be following yet.
    let mut warm_rng = workload::Rng::new(seed + 1);
    let mut following = false;
    for n in 1..=40 {
        if let Some(line) = tail.next_line(Duration::from_millis(500)) {
            printed.push(payload(line));
            following = true;
            break;
        }
        assert!(!tail.has_exited(), "tail exited: {:?}", tail.kill());
        let warm = workload::line("warm", n, 300, &mut warm_rng);
        known.insert(warm.clone());
        cluster
            .append("warm", log, vec![warm], Duration::from_secs(30))
            .assert_all_acked();
    }
    assert!(following, "tail printed nothing: {:?}", tail.kill());
    let chunks_before = cluster.stat(log).chunks.len();

    let after = workload::lines("after", 300, seed + 2, size);
    known.extend(after.iter().cloned());
    cluster
        .append("after", log, after.clone(), Duration::from_secs(60))
        .assert_all_acked();
    let chunks_after = cluster.stat(log).chunks.len();
    assert!(
        chunks_after >= chunks_before + 5,
        "the appends rolled the log only from {chunks_before} to {chunks_after} chunks"
    );

    let wanted: HashMap<&[u8], usize> = after
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_slice(), i))
        .collect();
    let mut seen_after: Vec<usize> = Vec::new();
    let mut seen_set: HashSet<usize> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Earlier lines may already include some of the records.
    let mut pending: VecDeque<Vec<u8>> = printed.drain(..).collect();
    while seen_set.len() < after.len() {
        let line = match pending.pop_front() {
            Some(l) => l,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                match tail.next_line(left) {
                    Some(l) => payload(l),
                    None => break,
                }
            }
        };
        assert!(
            known.contains(&line),
            "tail printed a record that was never appended: {}",
            String::from_utf8_lossy(&line)
        );
        if let Some(&i) = wanted.get(line.as_slice())
            && seen_set.insert(i)
        {
            seen_after.push(i);
        }
        printed.push(line);
    }
    let output = tail.kill();
    assert_eq!(
        seen_set.len(),
        after.len(),
        "tail printed {} of the {} records appended after it started ({} lines in all); {output:?}",
        seen_set.len(),
        after.len(),
        printed.len()
    );
    assert!(
        seen_after.windows(2).all(|w| w[0] < w[1]),
        "tail printed the records out of order: {seen_after:?}"
    );
    eprintln!(
        "tail_follows: {} lines printed, {} chunk rolls while following; done in {:.1} s",
        printed.len(),
        chunks_after - chunks_before,
        started.elapsed().as_secs_f64()
    );
}

/// Proves: `cairn tail --from-end` prints only records appended after it started, not the
/// open chunk's earlier ones (it printed them all: its probe of the chunk's readable end asked
/// for 0 bytes, which the chunkserver reads as "its default", and the answer was refused).
///
/// How: 1 master + 3 chunkservers; 5 records; `tail --from-end --json` started; once it has
/// certainly started, one more record; the tail's first line must be that record.
#[test]
fn tail_from_the_end_prints_only_new_records() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    cluster.create_log("/end", LogOpts::chunk_bytes(1 << 20));
    let old: Vec<Vec<u8>> = (0..5).map(|i| format!("old-{i}").into_bytes()).collect();
    cluster
        .append("old", "/end", old, Duration::from_secs(30))
        .assert_all_acked();
    let mut tail = cluster
        .cairn(&["tail", "/end", "--from-end", "--json"])
        .timeout(Duration::from_secs(60))
        .spawn();
    // Nothing to print yet: no line within 2 s (it would print the old records at once).
    assert_eq!(tail.next_line(Duration::from_secs(2)), None);
    cluster
        .append(
            "new",
            "/end",
            vec![b"new-0".to_vec()],
            Duration::from_secs(30),
        )
        .assert_all_acked();
    let line = tail
        .next_line(Duration::from_secs(30))
        .expect("the new record");
    let event: serde_json::Value = serde_json::from_slice(&line).expect("a JSON line");
    use base64::Engine as _;
    let new = base64::engine::general_purpose::STANDARD.encode("new-0");
    assert_eq!(event["payload"], new.as_str(), "first line {event}");
}

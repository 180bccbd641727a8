//! The `cairn exec` commands against a real cluster: creating a service's logs (output logs
//! placed one per chunkserver), listing services, and the shape of `exec status --json`.

use std::time::Duration;

use cairn_tests::{Cluster, ClusterOpts};

/// Proves that `cairn exec create shop` makes the input and vote logs at replication 3 and one
/// output log per replica at replication 1, each placed on a different chunkserver (the I-th in
/// address order), that an even replica count is refused, that `exec ls` lists the service, and
/// that `exec status --json` has the contract's fields with zero counts (and no snapshot) for a
/// new service.
///
/// How: 1 master + 3 chunkservers; run the commands, parse `ls --json` and `exec status --json`.
#[test]
fn exec_create_places_one_output_log_per_chunkserver() {
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    let even = cluster
        .cairn(&["exec", "create", "shop", "--replicas", "2"])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(
        !even.success() && even.stderr_str().contains("odd"),
        "{even:?}"
    );
    cluster
        .cairn(&["exec", "create", "shop"])
        .timeout(Duration::from_secs(30))
        .run_ok();

    let ls = cluster.cairn(&["ls", "/exec/shop/", "--json"]).run_ok();
    let logs: Vec<serde_json::Value> = ls
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let by_path = |p: &str| {
        logs.iter()
            .find(|l| l["path"] == p)
            .unwrap_or_else(|| panic!("{p} in {logs:?}"))
            .clone()
    };
    for shared in ["/exec/shop/inputs", "/exec/shop/votes"] {
        assert_eq!(by_path(shared)["replication"], 3);
        assert!(by_path(shared)["place_on"].is_null());
    }
    let mut expected = cluster.chunkserver_addrs();
    expected.sort();
    let placed: Vec<String> = (0..3)
        .map(|i| {
            let log = by_path(&format!("/exec/shop/outputs/{i}"));
            assert_eq!(log["replication"], 1);
            log["place_on"].as_str().expect("placed").to_owned()
        })
        .collect();
    assert_eq!(
        placed, expected,
        "output log I on the I-th chunkserver in address order"
    );

    let services = cluster.cairn(&["exec", "ls"]).run_ok().stdout_str();
    assert_eq!(services.trim(), "shop\t3 replicas");

    let status = cluster
        .cairn(&["exec", "status", "shop", "--json"])
        .run_ok()
        .stdout_str();
    let s: serde_json::Value = serde_json::from_str(status.trim()).expect("one JSON object");
    assert_eq!(s["service"], "shop");
    assert_eq!(
        (s["inputs"].as_u64(), s["votes"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(s["dissents"], 0);
    let replicas = s["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 3);
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["chunkserver"], placed[i].as_str());
        assert_eq!(
            (r["executed"].as_u64(), r["dissents"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(r["state"], "ok");
        assert!(r["snapshot"].is_null(), "no snapshot yet: {r}");
    }
    for field in [
        "inputs_on_disk",
        "outputs_on_disk",
        "output_records",
        "snapshot_records",
        "votes_on_disk",
    ] {
        assert!(s["bytes"][field].is_u64(), "bytes.{field} in {s}");
    }
    assert_eq!(s["bytes"]["output_records"], 0);
}

/// Proves the quarantine and timeline commands on a crafted vote log: `exec quarantine`
/// lists a QUARANTINE (text and `--json`), `--lift` refuses what is not a fingerprint and what
/// is not quarantined, lifts what is (recorded: the list is then empty and `status` counts 0),
/// and `exec timeline` prints a request's events (`--json`: one object per line, the contract's
/// fields) or fails clearly for a malformed or unknown request id.
///
/// How: 1 master + 3 chunkservers; `exec create`, then a QUARANTINE, a PENDING and an INPUT
/// appended with the client library (no service processes), then the commands.
#[test]
fn quarantine_and_timeline_commands() {
    use bytes::Bytes;
    use cairn_exec::records::{
        CODE_TIMEOUT, ExecRecord, Input, Kind, Pending, Quarantine, ReplicaOutcome, hex,
    };
    let _serial = cairn_tests::serial();
    let cluster = Cluster::start(3, ClusterOpts::default());
    cluster
        .cairn(&["exec", "create", "shop"])
        .timeout(Duration::from_secs(30))
        .run_ok();
    let request = Bytes::from(vec![0xab; 16]);
    let fingerprint = Bytes::from(vec![0xcd; 32]);
    let outcome = |replica| ReplicaOutcome {
        replica,
        code: CODE_TIMEOUT,
        detail: "killed after 1000 ms".to_owned(),
        ..ReplicaOutcome::default()
    };
    let records = [
        (
            "/exec/shop/inputs",
            Kind::Input(Input {
                request_id: request.clone(),
                method: "/shop.v1.Shop/Buy".to_owned(),
                fingerprint: fingerprint.clone(),
                received_at_ms: 1_000,
                deadline_ms: 1000,
                ..Input::default()
            }),
        ),
        (
            "/exec/shop/votes",
            Kind::Pending(Pending {
                request_id: request.clone(),
                deadline_ms: 1000,
                out: vec![2],
                at_ms: 3_000,
                ..Pending::default()
            }),
        ),
        (
            "/exec/shop/votes",
            Kind::Quarantine(Quarantine {
                request_id: request.clone(),
                fingerprint: fingerprint.clone(),
                method: "/shop.v1.Shop/Buy".to_owned(),
                outcomes: vec![outcome(0), outcome(1)],
                at_ms: 4_000,
                ..Quarantine::default()
            }),
        ),
    ];
    let master = cluster.master_addr();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let client = cairn_client::Client::connect(&master).await.unwrap();
        for (log, kind) in records {
            let appender = client.appender(log).await.unwrap();
            appender
                .append(ExecRecord::from(kind).to_payload())
                .await
                .unwrap();
        }
    });
    let (id, fp) = (hex(&request), hex(&fingerprint));

    let listed = cluster
        .cairn(&["exec", "quarantine", "shop", "--json"])
        .run_ok()
        .stdout_str();
    let q: serde_json::Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(
        (q["fingerprint"].as_str(), q["request_id"].as_str()),
        (Some(fp.as_str()), Some(id.as_str()))
    );
    assert_eq!(q["outcomes"][1]["status"], "TIMEOUT");
    let text = cluster.cairn(&["exec", "quarantine", "shop"]).run_ok();
    assert!(text.stdout_str().contains(&fp) && text.stderr_str().contains("1 quarantined"));

    let events: Vec<serde_json::Value> = cluster
        .cairn(&["exec", "timeline", "shop", &id, "--json"])
        .run_ok()
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["received", "logged", "pending", "reply", "quarantine"]
    );
    for field in [
        "event", "at", "replica", "status", "digest", "chunk", "offset",
    ] {
        assert!(events[0].get(field).is_some(), "{field} in {}", events[0]);
    }
    assert_eq!(events[1]["chunk"], 0);
    assert_eq!(events[3]["status"], "DeadlineExceeded");
    let text = cluster.cairn(&["exec", "timeline", "shop", &id]).run_ok();
    assert!(text.stdout_str().contains("quarantine"), "{text:?}");
    let bad = cluster.cairn(&["exec", "timeline", "shop", "xyz"]).run();
    assert!(
        !bad.success() && bad.stderr_str().contains("not a request id"),
        "{bad:?}"
    );
    let unknown = cluster
        .cairn(&["exec", "timeline", "shop", &"00".repeat(16)])
        .run();
    assert!(
        !unknown.success() && unknown.stderr_str().contains("not in service"),
        "{unknown:?}"
    );

    let bad = cluster
        .cairn(&["exec", "quarantine", "shop", "--lift", "abc"])
        .run();
    assert!(
        !bad.success() && bad.stderr_str().contains("not a fingerprint"),
        "{bad:?}"
    );
    let other = cluster
        .cairn(&["exec", "quarantine", "shop", "--lift", &"11".repeat(32)])
        .run();
    assert!(
        !other.success() && other.stderr_str().contains("not quarantined"),
        "{other:?}"
    );
    let lifted = cluster
        .cairn(&[
            "exec",
            "quarantine",
            "shop",
            "--lift",
            &fp,
            "--reason",
            "fixed in v2",
        ])
        .run_ok();
    assert!(lifted.stdout_str().contains("lifted"), "{lifted:?}");
    let listed = cluster
        .cairn(&["exec", "quarantine", "shop", "--json"])
        .run_ok()
        .stdout_str();
    assert_eq!(listed.trim(), "", "nothing quarantined after the lift");
    let status = cluster
        .cairn(&["exec", "status", "shop", "--json"])
        .run_ok()
        .stdout_str();
    let s: serde_json::Value = serde_json::from_str(status.trim()).expect("one JSON object");
    assert_eq!(
        (s["quarantined"].as_u64(), s["pending"].as_u64()),
        (Some(0), Some(0))
    );
}

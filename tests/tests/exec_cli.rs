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

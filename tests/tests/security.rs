//! TLS and roles against real processes (`cairn certs init`, `--tls-dir`): a cluster on TLS
//! serves its clients; each internal RPC is refused to a caller without a cluster role's
//! certificate; a client of another CA, a plaintext client and an `https://` address without
//! TLS all fail with one clear line; a server on a non-loopback address without TLS refuses to
//! start unless `--insecure`.

use std::path::Path;
use std::time::Duration;

use cairn_proto::net::tls::{Role, TlsFiles};
use cairn_proto::v1;
use cairn_proto::v1::chunkserver_client::ChunkserverClient;
use cairn_proto::v1::master_client::MasterClient;
use cairn_tests::{Cluster, ClusterOpts, Cmd, LogOpts, cairn_bin};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

fn certs_init(dir: &Path) {
    Cmd::new(cairn_bin())
        .args(["certs".to_owned(), "init".to_owned()])
        .args([dir.to_string_lossy().into_owned()])
        .run_ok();
}

/// A TLS channel to `addr` presenting `role`'s certificate from `dir`.
async fn channel(addr: &str, dir: &Path, role: Role) -> Result<Channel, tonic::transport::Error> {
    let files = TlsFiles::load(dir, role).unwrap();
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(files.client_config())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Every internal RPC, called on the right server with empty requests: its gRPC code.
async fn call_internal(
    master: &str,
    chunkserver: &str,
    dir: &Path,
    role: Role,
) -> Vec<(String, Code)> {
    let cs = channel(chunkserver, dir, role).await.unwrap();
    let m = channel(master, dir, role).await.unwrap();
    let mut cs = ChunkserverClient::new(cs);
    let mut m = MasterClient::new(m);
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    vec![
        (
            "Fence".into(),
            code(cs.fence(v1::FenceRequest::default()).await.map(drop)),
        ),
        (
            "Seal".into(),
            code(cs.seal(v1::SealRequest::default()).await.map(drop)),
        ),
        (
            "Forward".into(),
            code(cs.forward(v1::ForwardRequest::default()).await.map(drop)),
        ),
        (
            "Replicate".into(),
            code(
                cs.replicate(v1::ReplicateRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "CreateReplica".into(),
            code(
                cs.create_replica(v1::CreateReplicaRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "DeleteReplica".into(),
            code(
                cs.delete_replica(v1::DeleteReplicaRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "RegisterChunkserver".into(),
            code(
                m.register_chunkserver(v1::RegisterRequest::default())
                    .await
                    .map(drop),
            ),
        ),
        (
            "Heartbeat".into(),
            code(m.heartbeat(v1::HeartbeatRequest::default()).await.map(drop)),
        ),
    ]
}

/// Proves (issue 12, TLS and roles): with `--tls-dir` on every server and client, appends and
/// replays work; each of the 8 internal RPCs called with the cluster's *client* certificate is
/// refused `PERMISSION_DENIED` on the server that has it, while the master's certificate gets
/// past the guard (its empty request is refused for what it is, never `PERMISSION_DENIED`); a
/// client whose CA is another cluster's cannot connect; a plaintext client gets a one-line
/// error naming TLS; an `https://` address without `--tls-dir` is refused before any connection.
///
/// How: `cairn certs init` twice (this cluster's and another's); 1 master + 3 chunkservers with
/// `--tls-dir`; 200 records; raw gRPC calls with tonic clients generated from the protos.
#[test]
fn a_tls_cluster_serves_clients_and_keeps_internal_rpcs_to_its_roles() {
    let _serial = cairn_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    certs_init(&certs);
    certs_init(&other);
    let opts = ClusterOpts {
        tls_dir: Some(certs.clone()),
        ..ClusterOpts::default()
    };
    let cluster = Cluster::start(3, opts);
    cluster.create_log("/secure", LogOpts::chunk_bytes(1 << 20));
    let lines: Vec<Vec<u8>> = (0..200)
        .map(|i| format!("secret {i}").into_bytes())
        .collect();
    cluster
        .append("secure", "/secure", lines.clone(), Duration::from_secs(60))
        .assert_all_acked();
    let replay = cluster.replay("/secure", false, Duration::from_secs(60));
    assert_eq!(replay.payloads(), lines);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let master = cluster.master_addr();
    let chunkserver = cluster.chunkserver_addr(0);
    let as_client = rt.block_on(call_internal(&master, &chunkserver, &certs, Role::Client));
    assert_eq!(as_client.len(), 8);
    for (method, code) in &as_client {
        assert_eq!(
            *code,
            Code::PermissionDenied,
            "{method} with a client certificate"
        );
    }
    let as_master = rt.block_on(call_internal(&master, &chunkserver, &certs, Role::Master));
    for (method, code) in &as_master {
        assert_ne!(
            *code,
            Code::PermissionDenied,
            "{method} with the master's certificate"
        );
    }
    // Another cluster's CA: the handshake fails (each side distrusts the other's certificate).
    let refused = rt.block_on(async {
        match channel(&master, &other, Role::Master).await {
            Err(_) => true,
            Ok(ch) => MasterClient::new(ch)
                .list_logs(v1::ListLogsRequest::default())
                .await
                .is_err(),
        }
    });
    assert!(refused, "a client of another CA must not get an answer");
    let foreign_cli = Cmd::new(cairn_bin())
        .args(["ls", "--master", &master])
        .env("CAIRN_TLS_DIR", &other)
        .run();
    assert!(!foreign_cli.success(), "{foreign_cli:?}");
    assert_one_line(&foreign_cli.stderr_str());

    // Plaintext to a TLS port: one line that names TLS.
    let plain = Cmd::new(cairn_bin())
        .args(["ls", "--master", &master])
        .run();
    assert!(!plain.success());
    let err = plain.stderr_str();
    assert_one_line(&err);
    assert!(err.contains("--tls-dir"), "{err}");
    // https:// without TLS configured: refused before connecting.
    let https = Cmd::new(cairn_bin())
        .args(["ls", "--master", &format!("https://{master}")])
        .run();
    assert!(!https.success());
    assert!(
        https.stderr_str().contains("needs TLS configured"),
        "{}",
        https.stderr_str()
    );
}

/// Proves (issue 12, secure by default): a master or chunkserver told to listen on a
/// non-loopback address without `--tls-dir` refuses to start, saying how to fix it; with
/// `--insecure` it starts.
#[test]
fn plaintext_off_loopback_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("m");
    let refused = Cmd::new(cairn_bin())
        .args(["master", "--listen", "0.0.0.0:0", "--data"])
        .args([data.to_string_lossy().into_owned()])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(!refused.success());
    let err = refused.stderr_str();
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );
    let cs = Cmd::new(cairn_bin())
        .args([
            "chunkserver",
            "--listen",
            "0.0.0.0:0",
            "--advertise",
            "192.0.2.1:7001",
        ])
        .args(["--master", "127.0.0.1:1", "--data"])
        .args([dir.path().join("cs").to_string_lossy().into_owned()])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(!cs.success());
    assert!(
        cs.stderr_str().contains("--insecure"),
        "{}",
        cs.stderr_str()
    );
    // With --insecure it serves (until the deadline kills it).
    let started = Cmd::new(cairn_bin())
        .args(["master", "--listen", "0.0.0.0:0", "--insecure", "--data"])
        .args([data.to_string_lossy().into_owned()])
        .timeout(Duration::from_secs(3))
        .run();
    assert!(
        started.stderr_str().contains("master started"),
        "{}",
        started.stderr_str()
    );
}

/// The error part of a failed command's stderr is one line (no repeated cause, no dump).
fn assert_one_line(stderr: &str) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr:?}");
}

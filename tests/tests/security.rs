//! TLS and roles against real processes (`cairn certs init`, `--tls-dir`): a cluster on TLS
//! serves its clients; each internal RPC is refused to a caller without a cluster role's
//! certificate; a client of another CA, a plaintext client and an `https://` address without
//! TLS all fail with one clear line; tokens (`cairn certs token`) grant what their line names,
//! and a revoked one is refused without a restart; a server on a non-loopback address without
//! TLS refuses to start unless `--insecure`.

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

/// `cairn certs token DIR NAME --grant GRANT`: the token it prints.
fn make_token(dir: &Path, name: &str, grant: &str) -> String {
    let out = Cmd::new(cairn_bin())
        .args([
            "certs",
            "token",
            &dir.to_string_lossy(),
            name,
            "--grant",
            grant,
        ])
        .run_ok();
    out.stdout_str().trim().to_owned()
}

/// Proves (issue 12, tokens): a client with no certificate, only the cluster's `ca.pem` and a
/// token, gets what the token's grant names and nothing more, from the master and the
/// chunkservers alike: an `append` token creates a log and appends (the chunkservers check it
/// too) but cannot delete; a `read` token replays but cannot append; no token, an unknown one,
/// or a token without TLS each fail with one line saying why. A token made while the cluster
/// runs is accepted, and a revoked one refused, with no restart.
///
/// How: 1 master + 3 chunkservers with `--tls-dir`; `cairn` commands with `CAIRN_TOKEN` and a
/// `CAIRN_TLS_DIR` holding `ca.pem` alone.
#[test]
fn tokens_grant_what_they_name_and_revocation_needs_no_restart() {
    let _serial = cairn_tests::serial();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_init(&certs);
    let app = make_token(&certs, "app", "append");
    let dash = make_token(&certs, "dash", "read");
    let ca_only = dir.path().join("ca-only");
    std::fs::create_dir(&ca_only).unwrap();
    std::fs::copy(certs.join("ca.pem"), ca_only.join("ca.pem")).unwrap();
    let cluster = Cluster::start(
        3,
        ClusterOpts {
            tls_dir: Some(certs.clone()),
            ..ClusterOpts::default()
        },
    );
    let master = cluster.master_addr();
    let with_token = |token: &str, args: &[&str]| {
        Cmd::new(cairn_bin())
            .args(args.iter().map(|a| (*a).to_owned()))
            .args(["--master", &master])
            .env("CAIRN_TLS_DIR", &ca_only)
            .env("CAIRN_TOKEN", token)
            .timeout(Duration::from_secs(60))
    };
    let refused = |out: cairn_tests::proc::Output, why: &str| {
        assert!(!out.success(), "{out:?}");
        let err = out.stderr_str();
        assert_one_line(&err);
        assert!(err.contains(why), "expected {why:?} in {err}");
    };

    with_token(&app, &["create", "/tok", "--replication", "3"]).run_ok();
    with_token(&app, &["append", "/tok"])
        .stdin(b"one\ntwo\nthree\n".to_vec())
        .run_ok();
    let replay = with_token(&dash, &["replay", "/tok"]).run_ok();
    assert_eq!(replay.stdout_str(), "one\ntwo\nthree\n");
    refused(
        with_token(&dash, &["append", "/tok"])
            .stdin(b"four\n".to_vec())
            .run(),
        "needs the append grant",
    );
    refused(
        with_token(&app, &["rm", "/tok"]).run(),
        "needs the admin grant",
    );
    refused(
        with_token("cairn_guessed", &["ls"]).run(),
        "not one of this cluster's",
    );
    refused(
        Cmd::new(cairn_bin())
            .args(["ls", "--master", &master])
            .env("CAIRN_TLS_DIR", &ca_only)
            .run(),
        "present a token instead",
    );
    // The same, from a plain gRPC client that trusts the CA and presents nothing: the master
    // and a chunkserver answer UNAUTHENTICATED, naming both ways in.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let anonymous = |addr: String| {
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(std::fs::read(ca_only.join("ca.pem")).unwrap()),
        );
        rt.block_on(async move {
            Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap()
        })
    };
    let status = rt
        .block_on(
            MasterClient::new(anonymous(master.clone())).list_logs(v1::ListLogsRequest::default()),
        )
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("--token"), "{status:?}");
    let status = rt
        .block_on(
            ChunkserverClient::new(anonymous(cluster.chunkserver_addr(0)))
                .read(v1::ReadRequest::default()),
        )
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    refused(
        Cmd::new(cairn_bin())
            .args(["ls", "--master", &master])
            .env("CAIRN_TOKEN", &app)
            .run(),
        "only sent over TLS",
    );

    // Made while the cluster runs: accepted once the servers see the file changed.
    let ops = make_token(&certs, "ops", "admin");
    cairn_tests::wait_until("the new admin token works", Duration::from_secs(10), || {
        with_token(&ops, &["rm", "/tok"])
            .run()
            .success()
            .then_some(())
    });
    // Revoked while the cluster runs: refused without a restart.
    Cmd::new(cairn_bin())
        .args(["certs", "revoke", &certs.to_string_lossy(), "app"])
        .run_ok();
    let out = cairn_tests::wait_until(
        "the revoked token is refused",
        Duration::from_secs(10),
        || {
            let out = with_token(&app, &["ls"]).run();
            (!out.success()).then_some(out)
        },
    );
    refused(out, "not one of this cluster's");
    let listed = Cmd::new(cairn_bin())
        .args(["certs", "tokens", &certs.to_string_lossy()])
        .run_ok();
    assert_eq!(listed.stdout_str(), "dash read\nops admin\n");
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

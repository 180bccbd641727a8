//! TLS on every connection, and who may call what (README, "Security").
//!
//! A cluster has one certificate authority (`cairn certs init DIR`: `ca.pem`) and a certificate
//! per role, each naming its role in its subject's common name: `cairn-master`,
//! `cairn-chunkserver` (both *cluster roles*), `cairn-client`. Every server asks its callers
//! for a certificate signed by that CA (mutual TLS), and [`RoleGuard`] refuses the internal
//! RPCs ([`INTERNAL_METHODS`]) with `PERMISSION_DENIED` unless the caller's certificate names a
//! cluster role. A process's TLS files are [`TlsFiles`]: `ca.pem`, `ROLE.pem`, `ROLE.key` in
//! one directory (`--tls-dir`).
//!
//! Outgoing channels: once [`use_tls`] has been called, [`super::endpoint`] makes `https`
//! endpoints that present this process's certificate and trust only the cluster's CA; before,
//! it makes plain ones and refuses an `https://` address (never a silent plaintext connection).

use std::future::Ready;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::Either;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tower::{Layer, Service};

/// A role a certificate names (its subject's common name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `cairn-master`: a cluster role.
    Master,
    /// `cairn-chunkserver`: a cluster role.
    Chunkserver,
    /// `cairn-client`: applications and operators' tools.
    Client,
}

impl Role {
    /// Every role, in `cairn certs init`'s order.
    pub const ALL: [Role; 3] = [Role::Master, Role::Chunkserver, Role::Client];

    /// The file stem of its certificate and key (`master` → `master.pem`, `master.key`).
    pub fn file_stem(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Chunkserver => "chunkserver",
            Role::Client => "client",
        }
    }

    /// The common name its certificate carries.
    pub fn common_name(self) -> &'static str {
        match self {
            Role::Master => "cairn-master",
            Role::Chunkserver => "cairn-chunkserver",
            Role::Client => "cairn-client",
        }
    }

    /// Whether it may call the internal RPCs.
    pub fn is_cluster_role(self) -> bool {
        matches!(self, Role::Master | Role::Chunkserver)
    }

    fn from_common_name(cn: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.common_name() == cn)
    }
}

/// The RPCs only a cluster role may call: the chunkserver's replication and the master's
/// decisions (`Fence`, `Seal`, `Forward`, `Replicate`, `CreateReplica`, `DeleteReplica`), and
/// the chunkservers' membership (`RegisterChunkserver`, `Heartbeat`).
pub const INTERNAL_METHODS: [&str; 8] = [
    "/cairn.v1.Chunkserver/Fence",
    "/cairn.v1.Chunkserver/Seal",
    "/cairn.v1.Chunkserver/Forward",
    "/cairn.v1.Chunkserver/Replicate",
    "/cairn.v1.Chunkserver/CreateReplica",
    "/cairn.v1.Chunkserver/DeleteReplica",
    "/cairn.v1.Master/RegisterChunkserver",
    "/cairn.v1.Master/Heartbeat",
];

/// A process's TLS material: the cluster's CA and its own certificate and key, as PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The directory they were read from.
    pub dir: PathBuf,
    /// The role whose certificate this is.
    pub role: Role,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// TLS files that could not be read.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsFiles {
    /// Reads `DIR/ca.pem`, `DIR/ROLE.pem` and `DIR/ROLE.key`.
    pub fn load(dir: &Path, role: Role) -> Result<TlsFiles, TlsError> {
        let read = |name: String| {
            let path = dir.join(&name);
            std::fs::read(&path).map_err(|e| {
                TlsError(format!(
                    "read {} ({e}); make the cluster's files with `cairn certs init {}`",
                    path.display(),
                    dir.display()
                ))
            })
        };
        let stem = role.file_stem();
        Ok(TlsFiles {
            dir: dir.to_owned(),
            role,
            ca: read("ca.pem".into())?,
            cert: read(format!("{stem}.pem"))?,
            key: read(format!("{stem}.key"))?,
        })
    }

    /// A server's TLS: its certificate, and every caller must present one the cluster's CA
    /// signed.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// A channel's TLS: this process's certificate, and only the cluster's CA trusted.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}

static CLIENT_TLS: OnceLock<TlsFiles> = OnceLock::new();

/// Makes every later outgoing channel of this process TLS with `files` (the first call wins;
/// a process has one identity).
pub fn use_tls(files: TlsFiles) {
    let _ = CLIENT_TLS.set(files);
}

/// The TLS of this process's outgoing channels, if [`use_tls`] was called.
pub fn client_tls() -> Option<&'static TlsFiles> {
    CLIENT_TLS.get()
}

/// The role named by the first certificate of `chain` (a peer's, leaf first).
pub fn role_of(chain: &[tonic::transport::CertificateDer<'static>]) -> Option<Role> {
    role_of_der(chain.first()?.as_ref())
}

/// The role a DER certificate names in its subject's common name.
pub fn role_of_der(der: &[u8]) -> Option<Role> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Role::from_common_name(cn)
}

/// Refuses the [`INTERNAL_METHODS`] with `PERMISSION_DENIED` unless the caller presented a
/// certificate naming a cluster role; every other call passes. A server without TLS has no
/// guard (see README, "Security": only on loopback, or with `--insecure`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleGuard {
    enforce: bool,
}

impl RoleGuard {
    /// The guard of a server with TLS (`tls`: it checks callers' certificates) or without (it
    /// lets every call pass: there is no certificate to check).
    pub fn new(tls: bool) -> RoleGuard {
        RoleGuard { enforce: tls }
    }
}

impl<S> Layer<S> for RoleGuard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            enforce: self.enforce,
        }
    }
}

/// The service [`RoleGuard`] wraps.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    enforce: bool,
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    /// The refusal, ready at once, or the call itself: no allocation per call.
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if self.enforce && INTERNAL_METHODS.contains(&path) {
            let role =
                request
                    .extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<
                        tonic::transport::server::TcpConnectInfo,
                    >>()
                    .and_then(|info| info.peer_certs())
                    .and_then(|chain| role_of(&chain));
            if !role.is_some_and(Role::is_cluster_role) {
                let who = match role {
                    Some(r) => format!("a {} certificate", r.common_name()),
                    None => "no cluster certificate".to_owned(),
                };
                let status = tonic::Status::permission_denied(format!(
                    "{path} is an internal RPC: only the cluster's master and chunkservers may \
                     call it, and the caller presented {who}"
                ));
                return Either::Left(std::future::ready(Ok(status.into_http())));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

/// Whether every address of `listen` (`HOST:PORT`) is a loopback one: a server may run without
/// TLS there (nothing else on the network can reach it).
pub fn is_loopback(listen: &str) -> bool {
    let host = match listen.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => listen,
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Shared by the roles: the TLS a server listening on `listen` uses, from `tls_dir` (`None`:
/// plaintext), refused when plaintext would be reachable from other hosts and `insecure` is
/// not set.
pub fn server_tls(
    listen: &str,
    tls_dir: Option<&Path>,
    role: Role,
    insecure: bool,
) -> Result<Option<Arc<TlsFiles>>, TlsError> {
    match tls_dir {
        Some(dir) => Ok(Some(Arc::new(TlsFiles::load(dir, role)?))),
        None if is_loopback(listen) || insecure => Ok(None),
        None => Err(TlsError(format!(
            "{listen} is not a loopback address and no --tls-dir was given: anything on the \
             network could call this {} (including its internal RPCs); give --tls-dir DIR \
             (`cairn certs init DIR` makes one), or --insecure to serve plaintext anyway",
            role.file_stem()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_told_apart() {
        for a in [
            "127.0.0.1:7000",
            "localhost:7000",
            "[::1]:7000",
            "127.3.4.5:1",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in ["0.0.0.0:7000", "10.0.0.2:7000", "cs1:7001", "[::]:7000"] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn plaintext_off_loopback_is_refused_unless_insecure() {
        assert!(
            server_tls("127.0.0.1:7000", None, Role::Master, false)
                .unwrap()
                .is_none()
        );
        let e = server_tls("0.0.0.0:7000", None, Role::Master, false).unwrap_err();
        assert!(e.0.contains("--insecure"), "{e}");
        assert!(
            server_tls("0.0.0.0:7000", None, Role::Master, true)
                .unwrap()
                .is_none()
        );
    }
}

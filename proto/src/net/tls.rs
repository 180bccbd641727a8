//! TLS on every connection, and who may call what (README, "Security").
//!
//! A cluster has one certificate authority (`cairn certs init DIR`: `ca.pem`) and a certificate
//! per role, each naming its role in its subject's common name: `cairn-master`,
//! `cairn-chunkserver` (both *cluster roles*), `cairn-client`. Every server asks its callers
//! for a certificate signed by that CA (mutual TLS; a caller without one may present a token
//! instead), and its [`AccessGuard`](super::auth::AccessGuard) checks what each caller may call
//! (module [`super::auth`]). A process's TLS files are [`TlsFiles`]: `ca.pem`, `ROLE.pem`,
//! `ROLE.key` in one directory (`--tls-dir`); a server's are its [`ServerTls`], with the
//! directory's `tokens`.
//!
//! Outgoing channels: once [`use_tls`] has been called, [`super::endpoint`] makes `https`
//! endpoints that present this process's certificate and trust only the cluster's CA; before,
//! it makes plain ones and refuses an `https://` address (never a silent plaintext connection).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use super::auth::{AccessGuard, Tokens};

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

/// A process's TLS material: the cluster's CA and its own certificate and key, as PEM.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The directory they were read from.
    pub dir: PathBuf,
    /// The role whose certificate this is.
    pub role: Role,
    ca: Vec<u8>,
    /// The certificate and key, as PEM; `None` for a client that presents a token instead
    /// ([`TlsFiles::load_client`]).
    identity: Option<(Vec<u8>, Vec<u8>)>,
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
            identity: Some((read(format!("{stem}.pem"))?, read(format!("{stem}.key"))?)),
        })
    }

    /// A client's files: `DIR/ca.pem` and the client certificate, or, for a client that
    /// presents a token (`with_token`) and has no `client.pem`, the CA alone (it checks the
    /// servers' certificates and presents none).
    pub fn load_client(dir: &Path, with_token: bool) -> Result<TlsFiles, TlsError> {
        let cert = dir.join(format!("{}.pem", Role::Client.file_stem()));
        if !with_token && !cert.exists() && dir.join("ca.pem").exists() {
            return Err(TlsError(format!(
                "{} has the cluster's ca.pem but no client certificate (client.pem): present \
                 a token instead (--token or CAIRN_TOKEN), or copy client.pem and client.key \
                 there",
                dir.display()
            )));
        }
        if !with_token || cert.exists() {
            return TlsFiles::load(dir, Role::Client);
        }
        let ca = dir.join("ca.pem");
        let ca = std::fs::read(&ca).map_err(|e| {
            TlsError(format!(
                "read {} ({e}): a client with a token needs the cluster's CA certificate",
                ca.display()
            ))
        })?;
        Ok(TlsFiles {
            dir: dir.to_owned(),
            role: Role::Client,
            ca,
            identity: None,
        })
    }

    /// A channel's TLS: this process's certificate (if it has one), and only the cluster's CA
    /// trusted.
    pub fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// A server's TLS: its files and the tokens it accepts from callers without a certificate.
#[derive(Debug)]
pub struct ServerTls {
    /// The CA, and this server's certificate and key.
    pub files: TlsFiles,
    /// `DIR/tokens`, re-read when it changes.
    pub tokens: Arc<Tokens>,
    identity: Identity,
}

impl ServerTls {
    /// Reads `DIR/ca.pem`, `DIR/ROLE.pem`, `DIR/ROLE.key` and `DIR/tokens` (if any).
    pub fn load(dir: &Path, role: Role) -> Result<ServerTls, TlsError> {
        let files = TlsFiles::load(dir, role)?;
        let (cert, key) = files
            .identity
            .as_ref()
            .expect("TlsFiles::load reads a certificate and key");
        let identity = Identity::from_pem(cert, key);
        Ok(ServerTls {
            tokens: Arc::new(Tokens::load(dir)?),
            files,
            identity,
        })
    }

    /// The server's TLS: its certificate; a caller's certificate, if it presents one, must be
    /// signed by the cluster's CA (a caller without one may still present a token, which the
    /// [`AccessGuard`] checks).
    pub fn config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(Certificate::from_pem(&self.files.ca))
            .client_auth_optional(true)
    }

    /// The guard that checks every call's caller against this server's CA and tokens.
    pub fn guard(&self) -> AccessGuard {
        AccessGuard::checking(self.tokens.clone())
    }
}

/// The access guard of a server with `tls`, or the open one of a plaintext server.
pub fn guard_of(tls: Option<&ServerTls>) -> AccessGuard {
    tls.map_or_else(AccessGuard::open, ServerTls::guard)
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
) -> Result<Option<Arc<ServerTls>>, TlsError> {
    match tls_dir {
        Some(dir) => Ok(Some(Arc::new(ServerTls::load(dir, role)?))),
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

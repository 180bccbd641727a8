//! Who may call what on a server with TLS (README, "Security"): every caller is identified by
//! the certificate it presented or, without one, by a bearer token; each identity has a
//! [`Grant`], and each RPC needs one ([`required_grant`]). [`AccessGuard`] answers a call whose
//! caller is unknown with `UNAUTHENTICATED` and one whose grant is too small with
//! `PERMISSION_DENIED`, before the service sees it.
//!
//! | identity | grant |
//! | --- | --- |
//! | certificate `cairn-master` or `cairn-chunkserver` | [`Grant::Cluster`] |
//! | certificate `cairn-client` | [`Grant::Admin`] |
//! | token (no certificate) | the grant its line in `tokens` names |
//!
//! Tokens are made by `cairn certs token DIR NAME --grant G`, which prints the token once and
//! adds a line `NAME GRANT HASH` (blake3 of the token, hex) to `DIR/tokens`; a server reads the
//! `tokens` file of its `--tls-dir` at start and again within [`TOKENS_RELOAD_EVERY`] of a
//! change (`cairn certs revoke DIR NAME` takes effect without a restart). The file holds no
//! token, only hashes. A client sends its token (`--token`, `CAIRN_TOKEN`) in the
//! `authorization: Bearer TOKEN` header of every call, and only over TLS ([`use_token`]).

use std::collections::HashMap;
use std::future::Ready;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::future::Either;
use http::HeaderValue;
use tower::{Layer, Service};

use super::tls::{Role, TlsError, role_of};

/// What an identity may call, each grant including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grant {
    /// Look, never change: list and stat logs, read and replay records, checksums, the
    /// cluster's status and chunkservers, a log's replicas.
    Read,
    /// Also write records: create logs, append (open and seal chunks), resume a writer.
    Append,
    /// Also what an operator does: delete logs, report a corrupt replica (`cairn fsck`).
    Admin,
    /// Also the internal RPCs of the master and chunkservers ([`INTERNAL_METHODS`]).
    Cluster,
}

impl Grant {
    /// Every grant a token may carry (a token never has [`Grant::Cluster`]).
    pub const FOR_TOKENS: [Grant; 3] = [Grant::Read, Grant::Append, Grant::Admin];

    /// Its name in the `tokens` file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Read => "read",
            Grant::Append => "append",
            Grant::Admin => "admin",
            Grant::Cluster => "cluster",
        }
    }

    /// The grant a token may carry named `name`.
    pub fn for_token(name: &str) -> Option<Grant> {
        Grant::FOR_TOKENS.into_iter().find(|g| g.name() == name)
    }

    /// The grant of a certificate naming `role`.
    pub fn of_role(role: Role) -> Grant {
        if role.is_cluster_role() {
            Grant::Cluster
        } else {
            Grant::Admin
        }
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every RPC of `cairn.v1` and the grant it needs. A method missing here needs
/// [`Grant::Cluster`] (refused to everyone but the cluster's roles: deny by default).
const METHOD_GRANTS: [(&str, Grant); 25] = [
    ("/cairn.v1.Master/ListLogs", Grant::Read),
    ("/cairn.v1.Master/StatLog", Grant::Read),
    ("/cairn.v1.Master/ListReplicas", Grant::Read),
    ("/cairn.v1.Master/ListChunkservers", Grant::Read),
    ("/cairn.v1.Master/ClusterStatus", Grant::Read),
    ("/cairn.v1.Chunkserver/Read", Grant::Read),
    ("/cairn.v1.Chunkserver/Checksum", Grant::Read),
    ("/cairn.v1.Master/CreateLog", Grant::Append),
    ("/cairn.v1.Master/OpenChunk", Grant::Append),
    ("/cairn.v1.Master/SealChunk", Grant::Append),
    ("/cairn.v1.Master/ResumeWriter", Grant::Append),
    ("/cairn.v1.Chunkserver/Append", Grant::Append),
    ("/cairn.v1.Master/DeleteLog", Grant::Admin),
    ("/cairn.v1.Master/ReportCorrupt", Grant::Admin),
    ("/cairn.v1.Chunkserver/Fence", Grant::Cluster),
    ("/cairn.v1.Chunkserver/Seal", Grant::Cluster),
    ("/cairn.v1.Chunkserver/Forward", Grant::Cluster),
    ("/cairn.v1.Chunkserver/Replicate", Grant::Cluster),
    ("/cairn.v1.Chunkserver/CreateReplica", Grant::Cluster),
    ("/cairn.v1.Chunkserver/DeleteReplica", Grant::Cluster),
    ("/cairn.v1.Master/RegisterChunkserver", Grant::Cluster),
    ("/cairn.v1.Master/Heartbeat", Grant::Cluster),
    ("/cairn.v1.MasterPeer/AppendEntries", Grant::Cluster),
    ("/cairn.v1.MasterPeer/Vote", Grant::Cluster),
    ("/cairn.v1.MasterPeer/InstallSnapshot", Grant::Cluster),
];

/// The RPCs only a cluster role may call: the chunkserver's replication and the master's
/// decisions (`Fence`, `Seal`, `Forward`, `Replicate`, `CreateReplica`, `DeleteReplica`), the
/// chunkservers' membership (`RegisterChunkserver`, `Heartbeat`), and the masters' Raft.
pub const INTERNAL_METHODS: [&str; 11] = [
    "/cairn.v1.Chunkserver/Fence",
    "/cairn.v1.Chunkserver/Seal",
    "/cairn.v1.Chunkserver/Forward",
    "/cairn.v1.Chunkserver/Replicate",
    "/cairn.v1.Chunkserver/CreateReplica",
    "/cairn.v1.Chunkserver/DeleteReplica",
    "/cairn.v1.Master/RegisterChunkserver",
    "/cairn.v1.Master/Heartbeat",
    "/cairn.v1.MasterPeer/AppendEntries",
    "/cairn.v1.MasterPeer/Vote",
    "/cairn.v1.MasterPeer/InstallSnapshot",
];

/// The grant a call of `path` (`/package.Service/Method`) needs.
pub fn required_grant(path: &str) -> Grant {
    METHOD_GRANTS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Grant::Cluster, |(_, g)| *g)
}

/// The gRPC metadata key the guard sets on its refusals (value `access`), so a client tells
/// them from a service's own `PERMISSION_DENIED` (a fenced writer's).
pub const REFUSAL_METADATA: &str = "cairn-refused";

/// The name of the file of token hashes in a TLS directory.
pub const TOKENS_FILE: &str = "tokens";

/// A server notices a changed `tokens` file within this long (it looks at the file's size and
/// modification time at most this often, on a call that presents a token).
pub const TOKENS_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// One line of a `tokens` file: a named token, its grant and the blake3 hash of its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    /// Who or what holds it (letters, digits, `-`, `_`, `.`), unique in the file.
    pub name: String,
    /// What it may call.
    pub grant: Grant,
    /// blake3 of the token's text.
    pub hash: [u8; 32],
}

impl TokenEntry {
    /// The entry of a new token `token`.
    pub fn new(name: &str, grant: Grant, token: &str) -> Result<TokenEntry, String> {
        check_name(name)?;
        Ok(TokenEntry {
            name: name.to_owned(),
            grant,
            hash: *blake3::hash(token.as_bytes()).as_bytes(),
        })
    }

    /// Its line in the file (without the newline): `NAME GRANT HASH`.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.name,
            self.grant,
            blake3::Hash::from_bytes(self.hash).to_hex()
        )
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a token name: 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Reads a `tokens` file's text: one [`TokenEntry`] per line, blank lines and lines starting
/// with `#` skipped. An error names the line; names and hashes are unique.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, String> {
    let mut entries: Vec<TokenEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| format!("line {}: {why}", i + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, grant, hash] = fields[..] else {
            return Err(bad("expected NAME GRANT HASH".into()));
        };
        check_name(name).map_err(bad)?;
        let grant = Grant::for_token(grant)
            .ok_or_else(|| bad(format!("{grant:?} is not a grant (read, append or admin)")))?;
        let hash = blake3::Hash::from_hex(hash)
            .map_err(|_| bad("the hash is not 64 hex digits".into()))?;
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(format!("the name {name:?} appears twice")));
        }
        if entries.iter().any(|e| e.hash == *hash.as_bytes()) {
            return Err(bad("the same token appears twice".into()));
        }
        entries.push(TokenEntry {
            name: name.to_owned(),
            grant,
            hash: *hash.as_bytes(),
        });
    }
    Ok(entries)
}

/// A server's tokens: its `tokens` file, read at start and again after it changed.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    state: Mutex<TokensState>,
}

#[derive(Debug)]
struct TokensState {
    by_hash: HashMap<[u8; 32], (String, Grant)>,
    /// The file's stamp when read (`None`: there was no file).
    stamp: Option<Stamp>,
    checked: tokio::time::Instant,
}

impl Tokens {
    /// Reads `dir/tokens`; no file means no tokens (only certificates are accepted).
    pub fn load(dir: &Path) -> Result<Tokens, TlsError> {
        let path = dir.join(TOKENS_FILE);
        let (by_hash, stamp) = read_tokens(&path).map_err(TlsError)?;
        Ok(Tokens {
            path,
            state: Mutex::new(TokensState {
                by_hash,
                stamp,
                checked: tokio::time::Instant::now(),
            }),
        })
    }

    /// The name and grant of `token`, if it is one of the file's (re-read first when it
    /// changed; a file that no longer parses keeps the tokens read before, and says so).
    pub fn grant_of(&self, token: &str) -> Option<(String, Grant)> {
        let hash = *blake3::hash(token.as_bytes()).as_bytes();
        let mut state = self
            .state
            .lock()
            .expect("tokens lock is never held across a panic");
        if state.checked.elapsed() >= TOKENS_RELOAD_EVERY {
            state.checked = tokio::time::Instant::now();
            if stamp_of(&self.path) != state.stamp {
                match read_tokens(&self.path) {
                    Ok((by_hash, stamp)) => {
                        tracing::info!(path = %self.path.display(), tokens = by_hash.len(), "tokens re-read");
                        state.by_hash = by_hash;
                        state.stamp = stamp;
                    }
                    Err(e) => tracing::error!("{e}; the tokens read before stay in force"),
                }
            }
        }
        state.by_hash.get(&hash).cloned()
    }
}

type TokenTable = HashMap<[u8; 32], (String, Grant)>;

/// What tells one version of a file from the next: its inode (a file replaced by a rename, as
/// `cairn certs` writes it, has a new one), size and modification time.
type Stamp = (u64, u64, SystemTime);

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

fn read_tokens(path: &Path) -> Result<(TokenTable, Option<Stamp>), String> {
    let stamp = stamp_of(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((HashMap::new(), None)),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let entries = parse_tokens(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let table = entries
        .into_iter()
        .map(|e| (e.hash, (e.name, e.grant)))
        .collect();
    Ok((table, stamp))
}

static CLIENT_TOKEN: OnceLock<HeaderValue> = OnceLock::new();

/// Makes every later call of this process (through [`super::Link`]) carry `token` (the first
/// call wins; a process has one identity). Channels then need TLS: [`super::endpoint`] refuses
/// a plaintext address while a token is set, so it never crosses the network in the clear.
pub fn use_token(token: &str) -> Result<(), TlsError> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.trim()))
        .map_err(|_| TlsError("the token holds characters a header cannot carry".into()))?;
    value.set_sensitive(true);
    let _ = CLIENT_TOKEN.set(value);
    Ok(())
}

/// The `authorization` header of this process's calls, if [`use_token`] was called.
pub fn client_token() -> Option<&'static HeaderValue> {
    CLIENT_TOKEN.get()
}

/// The token a request presents in `authorization: Bearer TOKEN`.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks every call against its caller's [`Grant`] (see the module doc). A server without TLS
/// has an open guard that lets every call pass: there is no certificate to check, and a token
/// would travel in the clear (README, "Security": only on loopback, or with `--insecure`).
#[derive(Clone, Debug, Default)]
pub struct AccessGuard {
    /// `None`: the open guard.
    tokens: Option<Arc<Tokens>>,
}

impl AccessGuard {
    /// The guard of a server with TLS: certificates, and the tokens of `tokens`.
    pub fn checking(tokens: Arc<Tokens>) -> AccessGuard {
        AccessGuard {
            tokens: Some(tokens),
        }
    }

    /// The guard of a plaintext server: every call passes.
    pub fn open() -> AccessGuard {
        AccessGuard { tokens: None }
    }
}

impl<S> Layer<S> for AccessGuard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service [`AccessGuard`] wraps.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

/// Who called, as the guard found out: a description for refusals, and the grant.
fn caller<B>(request: &http::Request<B>, tokens: &Tokens) -> Result<(String, Grant), String> {
    let role = request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|chain| role_of(&chain));
    if let Some(role) = role {
        return Ok((
            format!("a {} certificate", role.common_name()),
            Grant::of_role(role),
        ));
    }
    match bearer(request.headers()) {
        Some(token) => match tokens.grant_of(token) {
            Some((name, grant)) => Ok((format!("token {name:?}"), grant)),
            None => Err(
                "the token presented is not one of this cluster's (revoked, mistyped, or made \
                 for another cluster)"
                    .to_owned(),
            ),
        },
        None => Err(
            "the caller presented neither a certificate of this cluster nor a token: \
                     give --tls-dir DIR with the client certificate, or --token (CAIRN_TOKEN)"
                .to_owned(),
        ),
    }
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
        if let Some(tokens) = &self.tokens {
            let path = request.uri().path();
            let needed = required_grant(path);
            let refusal = match caller(&request, tokens) {
                Err(why) => Some(tonic::Status::unauthenticated(why)),
                Ok((who, grant)) if grant < needed => {
                    let what = if needed == Grant::Cluster {
                        "is an internal RPC: only the cluster's master and chunkservers may call it"
                            .to_owned()
                    } else {
                        format!("needs the {needed} grant")
                    };
                    Some(tonic::Status::permission_denied(format!(
                        "{path} {what}, and the caller presented {who}, which grants {grant}"
                    )))
                }
                Ok(_) => None,
            };
            if let Some(mut status) = refusal {
                status.metadata_mut().insert(
                    REFUSAL_METADATA,
                    tonic::metadata::MetadataValue::from_static("access"),
                );
                return Either::Left(std::future::ready(Ok(status.into_http())));
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: every RPC of the protos has a grant in the table (a new RPC cannot fall to the
    // deny-by-default without someone deciding), the internal ones need Cluster, and nothing
    // else does.
    #[test]
    fn every_rpc_of_the_protos_has_a_grant() {
        let protos = [
            ("Master", include_str!("../../proto/cairn/v1/master.proto")),
            (
                "Chunkserver",
                include_str!("../../proto/cairn/v1/chunkserver.proto"),
            ),
            (
                "MasterPeer",
                include_str!("../../proto/cairn/v1/master_peer.proto"),
            ),
        ];
        let mut count = 0;
        for (service, text) in protos {
            for line in text.lines() {
                let Some(rest) = line.trim().strip_prefix("rpc ") else {
                    continue;
                };
                let method = rest.split('(').next().unwrap().trim();
                let path = format!("/cairn.v1.{service}/{method}");
                assert!(
                    METHOD_GRANTS.iter().any(|(p, _)| *p == path),
                    "{path} has no grant"
                );
                assert_eq!(
                    required_grant(&path) == Grant::Cluster,
                    INTERNAL_METHODS.contains(&path.as_str()),
                    "{path}"
                );
                count += 1;
            }
        }
        assert_eq!(count, METHOD_GRANTS.len());
        assert_eq!(required_grant("/bank.Bank/Open"), Grant::Cluster);
    }

    // Proves: a tokens file reads back what was written, skips comments and blank lines, and a
    // bad line (fields, grant, hash, duplicate name or token, bad name) is refused naming it.
    #[test]
    fn tokens_files_parse_and_refuse_bad_lines() {
        let a = TokenEntry::new("app-1", Grant::Append, "secret-a").unwrap();
        let b = TokenEntry::new("ops", Grant::Admin, "secret-b").unwrap();
        let text = format!("# tokens\n\n{}\n{}\n", a.line(), b.line());
        assert_eq!(parse_tokens(&text).unwrap(), vec![a.clone(), b.clone()]);
        let hash = a.line().rsplit(' ').next().unwrap().to_owned();
        for (bad, why) in [
            ("x read".to_owned(), "NAME GRANT HASH"),
            (format!("x cluster {hash}"), "not a grant"),
            ("x read 12ab".to_owned(), "64 hex"),
            (format!("{}\n{}", a.line(), a.line()), "twice"),
            (format!("{}\nother read {hash}", a.line()), "twice"),
            (format!("b/d read {hash}"), "not a token name"),
        ] {
            let e = parse_tokens(&bad).unwrap_err();
            assert!(e.contains(why) && e.starts_with("line "), "{bad:?}: {e}");
        }
        assert!(TokenEntry::new("", Grant::Read, "t").is_err());
    }

    // Proves: the guard of a TLS server refuses a call with no certificate and no token
    // (UNAUTHENTICATED), an unknown token (UNAUTHENTICATED), a token whose grant is too small
    // (PERMISSION_DENIED, naming the token and both grants); passes a sufficient one; notices a
    // revoked token once the file changed; and the open guard passes everything.
    #[tokio::test(start_paused = true)]
    async fn the_guard_checks_tokens_against_each_method() {
        let dir = tempfile::tempdir().unwrap();
        let write = |entries: &[TokenEntry]| {
            let text: String = entries.iter().map(|e| e.line() + "\n").collect();
            std::fs::write(dir.path().join(TOKENS_FILE), text).unwrap();
        };
        let reader = TokenEntry::new("dash", Grant::Read, "tok-r").unwrap();
        let writer = TokenEntry::new("app", Grant::Append, "tok-w").unwrap();
        write(&[reader.clone(), writer.clone()]);
        let tokens = Arc::new(Tokens::load(dir.path()).unwrap());
        let mut guard =
            AccessGuard::checking(tokens).layer(tower::service_fn(|_: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
            }));
        async fn code(
            guard: &mut Guarded<
                impl Service<
                    http::Request<()>,
                    Response = http::Response<tonic::body::Body>,
                    Error = std::convert::Infallible,
                >,
            >,
            path: &str,
            token: Option<&str>,
        ) -> (tonic::Code, String) {
            let mut request = http::Request::builder().uri(path);
            if let Some(t) = token {
                request = request.header("authorization", format!("Bearer {t}"));
            }
            let response = guard.call(request.body(()).unwrap()).await.unwrap();
            match tonic::Status::from_header_map(response.headers()) {
                Some(s) => {
                    assert!(s.metadata().get(REFUSAL_METADATA).is_some(), "{s:?}");
                    (s.code(), s.message().to_owned())
                }
                None => (tonic::Code::Ok, String::new()),
            }
        }
        let append = "/cairn.v1.Chunkserver/Append";
        let read = "/cairn.v1.Chunkserver/Read";
        assert_eq!(
            code(&mut guard, read, None).await.0,
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(&mut guard, read, Some("nope")).await.0,
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(&mut guard, read, Some("tok-r")).await.0,
            tonic::Code::Ok
        );
        let (c, m) = code(&mut guard, append, Some("tok-r")).await;
        assert_eq!(c, tonic::Code::PermissionDenied);
        assert!(
            m.contains("\"dash\"") && m.contains("append grant") && m.contains("grants read"),
            "{m}"
        );
        assert_eq!(
            code(&mut guard, append, Some("tok-w")).await.0,
            tonic::Code::Ok
        );
        let (c, m) = code(&mut guard, "/cairn.v1.Chunkserver/Fence", Some("tok-w")).await;
        assert_eq!(c, tonic::Code::PermissionDenied);
        assert!(m.contains("internal RPC"), "{m}");
        assert_eq!(
            code(&mut guard, "/cairn.v1.Master/DeleteLog", Some("tok-w"))
                .await
                .0,
            tonic::Code::PermissionDenied
        );

        // Revoked: the file changes; the guard sees it on its next look.
        write(&[reader]);
        tokio::time::advance(TOKENS_RELOAD_EVERY).await;
        assert_eq!(
            code(&mut guard, append, Some("tok-w")).await.0,
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(&mut guard, read, Some("tok-r")).await.0,
            tonic::Code::Ok
        );

        let mut open = AccessGuard::open().layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        }));
        assert_eq!(
            code(&mut open, "/cairn.v1.Chunkserver/Fence", None).await.0,
            tonic::Code::Ok
        );
    }
}

//! `cairn certs init DIR`: a cluster's TLS files. One CA (`ca.pem`, `ca.key`) and a certificate
//! and key per role (`master`, `chunkserver`, `client`), each naming its role in its common
//! name (`cairn-master`, …) and valid for the hosts given (subject alternative names), all
//! signed by the CA. Every server and client of the cluster is given the directory
//! (`--tls-dir`); keep `ca.key` elsewhere once the certificates are made.
//!
//! `cairn certs token DIR NAME --grant G`, `cairn certs revoke DIR NAME`, `cairn certs tokens
//! DIR`: the clients' tokens, kept as hashes in `DIR/tokens` (format and grants:
//! `cairn_proto::net::auth`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use cairn_proto::net::auth::{Grant, TOKENS_FILE, TokenEntry, parse_tokens};
use cairn_proto::net::tls::Role;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// `cairn certs`.
#[derive(clap::Args, Debug)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CertsCommand {
    /// Make a cluster CA and a certificate for each role (master, chunkserver, client) in DIR.
    Init(InitArgs),
    /// Make a client token: print it (once; only its hash is kept) and add it to DIR/tokens.
    /// Copy DIR/tokens to every master and chunkserver; they pick up changes within a second.
    Token(TokenArgs),
    /// Revoke the token named NAME (removed from DIR/tokens; servers refuse it within a
    /// second of seeing the changed file).
    Revoke(RevokeArgs),
    /// List the tokens of DIR/tokens: name and grant.
    Tokens(TokensArgs),
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    /// The cluster's TLS directory (`cairn certs init DIR`).
    dir: PathBuf,
    /// Who or what will hold the token (letters, digits, '-', '_', '.'), unique in DIR/tokens.
    name: String,
    /// What it may call: read (list, stat, read, replay, status), append (also create logs and
    /// append), admin (also delete logs and report corrupt replicas).
    #[arg(long, default_value = "append", value_parser = parse_grant)]
    grant: Grant,
}

#[derive(clap::Args, Debug)]
struct RevokeArgs {
    /// The cluster's TLS directory.
    dir: PathBuf,
    /// The token's name.
    name: String,
}

#[derive(clap::Args, Debug)]
struct TokensArgs {
    /// The cluster's TLS directory.
    dir: PathBuf,
}

fn parse_grant(s: &str) -> Result<Grant, String> {
    Grant::for_token(s).ok_or_else(|| format!("{s:?} is not a grant: read, append or admin"))
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Where to write ca.pem, ca.key, master.pem, master.key, chunkserver.pem, chunkserver.key,
    /// client.pem and client.key (created if missing).
    dir: PathBuf,
    /// The host names and IP addresses the master and chunkservers are reached at, comma
    /// separated (each server certificate is valid for all of them). localhost and 127.0.0.1
    /// are always included.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// Replace files that exist (every certificate issued before stops being trusted).
    #[arg(long)]
    force: bool,
}

/// Runs `cairn certs`.
pub(crate) fn run(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CertsCommand::Init(init) => {
            let written = init_dir(&init.dir, &init.hosts, init.force)?;
            for path in written {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Token(t) => {
            let token = add_token(&t.dir, &t.name, t.grant)?;
            println!("{token}");
            eprintln!(
                "token {:?} ({} grant) added to {}: give it to its holder (--token or \
                 CAIRN_TOKEN, with a --tls-dir holding ca.pem); it is not shown again. Copy the \
                 tokens file to every master and chunkserver.",
                t.name,
                t.grant,
                t.dir.join(TOKENS_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Revoke(r) => {
            revoke_token(&r.dir, &r.name)?;
            eprintln!(
                "token {:?} revoked in {}: copy the file to every master and chunkserver",
                r.name,
                r.dir.join(TOKENS_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Tokens(l) => {
            for entry in read_tokens(&l.dir)? {
                println!("{} {}", entry.name, entry.grant);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The entries of `dir/tokens` (none if there is no file).
fn read_tokens(dir: &Path) -> anyhow::Result<Vec<TokenEntry>> {
    let path = dir.join(TOKENS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_tokens(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Replaces `dir/tokens` by `entries` in one step (a server reading it meanwhile sees the old
/// file or the new one, never a part).
fn write_tokens(dir: &Path, entries: &[TokenEntry]) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Cairn client tokens: NAME GRANT BLAKE3-OF-TOKEN (made by `cairn certs token`)\n",
    );
    for e in entries {
        text.push_str(&e.line());
        text.push('\n');
    }
    let path = dir.join(TOKENS_FILE);
    let tmp = dir.join(format!("{TOKENS_FILE}.tmp"));
    write_private(&tmp, &text, true)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replace {}", path.display()))
}

/// Makes a token named `name` with `grant`, adds its hash to `dir/tokens`, and returns it.
fn add_token(dir: &Path, name: &str, grant: Grant) -> anyhow::Result<String> {
    use base64::Engine;
    use rand::RngCore;
    if !dir.join("ca.pem").exists() {
        anyhow::bail!(
            "{} holds no ca.pem: make the cluster's files first (`cairn certs init {}`)",
            dir.display(),
            dir.display()
        );
    }
    let mut entries = read_tokens(dir)?;
    if entries.iter().any(|e| e.name == name) {
        anyhow::bail!(
            "a token named {name:?} exists already (`cairn certs revoke {} {name}` first)",
            dir.display()
        );
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!(
        "cairn_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    entries.push(TokenEntry::new(name, grant, &token).map_err(anyhow::Error::msg)?);
    write_tokens(dir, &entries)?;
    Ok(token)
}

/// Removes the token named `name` from `dir/tokens`.
fn revoke_token(dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut entries = read_tokens(dir)?;
    let before = entries.len();
    entries.retain(|e| e.name != name);
    if entries.len() == before {
        anyhow::bail!(
            "no token named {name:?} in {}",
            dir.join(TOKENS_FILE).display()
        );
    }
    write_tokens(dir, &entries)
}

/// Writes the CA and every role's certificate into `dir`; returns the files written.
fn init_dir(dir: &Path, hosts: &[String], force: bool) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut names = vec!["ca.pem".to_owned(), "ca.key".to_owned()];
    for role in Role::ALL {
        names.push(format!("{}.pem", role.file_stem()));
        names.push(format!("{}.key", role.file_stem()));
    }
    if !force && let Some(taken) = names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
        anyhow::bail!(
            "{} exists: the directory already holds a cluster's TLS files (--force replaces \
             them, and every certificate they issued stops being trusted)",
            taken.display()
        );
    }
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for h in hosts {
        let h = h.trim();
        if !h.is_empty() && !sans.iter().any(|s| s == h) {
            sans.push(h.to_owned());
        }
    }
    let ca_key = KeyPair::generate().context("generate the CA's key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "cairn cluster CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem_key = ca_key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).context("sign the CA")?;
    let mut files = vec![
        ("ca.pem".to_owned(), issuer.pem()),
        ("ca.key".to_owned(), ca_pem_key),
    ];
    for role in Role::ALL {
        let key = KeyPair::generate().context("generate a key")?;
        let mut params =
            CertificateParams::new(sans.clone()).with_context(|| format!("host names {sans:?}"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, role.common_name());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("sign the {} certificate", role.file_stem()))?;
        files.push((format!("{}.pem", role.file_stem()), cert.pem()));
        files.push((format!("{}.key", role.file_stem()), key.serialize_pem()));
    }
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = dir.join(&name);
        write_private(&path, &contents, name.ends_with(".key"))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `contents` to `path`, readable by its owner only when `secret`.
fn write_private(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves: init writes the CA and every role's files, each certificate names its role (as the
    // servers' guard reads it), keys are private, and a second init refuses to overwrite.
    #[test]
    fn init_makes_a_ca_and_a_certificate_per_role() {
        let dir = tempfile::tempdir().unwrap();
        let written = init_dir(dir.path(), &["10.0.0.2".to_owned()], false).unwrap();
        assert_eq!(written.len(), 8);
        for role in Role::ALL {
            let files = cairn_proto::net::tls::TlsFiles::load(dir.path(), role).unwrap();
            assert_eq!(files.role, role);
            let pem = std::fs::read_to_string(dir.path().join(format!("{}.pem", role.file_stem())))
                .unwrap();
            assert_eq!(
                cairn_proto::net::tls::role_of_der(&pem_body(&pem)),
                Some(role)
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys are private: {mode:o}");
        let again = init_dir(dir.path(), &[], false).unwrap_err();
        assert!(format!("{again:#}").contains("--force"), "{again:#}");
        init_dir(dir.path(), &[], true).unwrap();
    }

    // Proves: a token is added with its grant (and only its hash stored), listed, refused a
    // second time under the same name, revoked, and revoking an unknown name fails.
    #[test]
    fn tokens_are_added_listed_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            add_token(dir.path(), "app", Grant::Read).is_err(),
            "no ca.pem yet"
        );
        init_dir(dir.path(), &[], false).unwrap();
        let token = add_token(dir.path(), "app", Grant::Read).unwrap();
        let other = add_token(dir.path(), "ops", Grant::Admin).unwrap();
        assert_ne!(token, other);
        assert!(token.starts_with("cairn_") && token.len() > 40, "{token}");
        let file = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!file.contains(&token[6..]), "the file holds hashes only");
        let listed = read_tokens(dir.path()).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|e| (e.name.as_str(), e.grant))
                .collect::<Vec<_>>(),
            [("app", Grant::Read), ("ops", Grant::Admin)]
        );
        assert_eq!(
            listed[0],
            TokenEntry::new("app", Grant::Read, &token).unwrap()
        );
        let again = add_token(dir.path(), "app", Grant::Admin).unwrap_err();
        assert!(format!("{again:#}").contains("exists"), "{again:#}");
        revoke_token(dir.path(), "app").unwrap();
        assert_eq!(read_tokens(dir.path()).unwrap().len(), 1);
        assert!(revoke_token(dir.path(), "app").is_err());
    }

    fn pem_body(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
}

//! `cairn certs init DIR`: a cluster's TLS files. One CA (`ca.pem`, `ca.key`) and a certificate
//! and key per role (`master`, `chunkserver`, `client`), each naming its role in its common
//! name (`cairn-master`, …) and valid for the hosts given (subject alternative names), all
//! signed by the CA. Every server and client of the cluster is given the directory
//! (`--tls-dir`); keep `ca.key` elsewhere once the certificates are made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
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
    }
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

    fn pem_body(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
}

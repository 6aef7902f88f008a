//! HTTPS with rustls: the certificate and key are read and checked as a pair, then swapped atomically
//! on reload; a bad new pair is refused and the old one keeps serving. ALPN offers h2 and http/1.1.
//! Also its flags and `[tls]` keys ([`TlsSection`]).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Args;
use merge::Merge;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

use crate::operator_file;
use crate::setting::{pair, Unusable};

/// TLS certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[tls]`: serve HTTPS ([`TlsFiles`]).
#[derive(Debug, Default, Clone, Args, Deserialize, Serialize, Merge)]
#[serde(deny_unknown_fields)]
#[merge(strategy = merge::option::overwrite_none)]
pub struct TlsSection {
    /// PEM certificate chain; with --tls-key, serve HTTPS.
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl TlsSection {
    /// Both files or neither; each missing one names itself.
    pub fn settle(self) -> Result<Option<TlsFiles>, Unusable> {
        let pair = pair(
            self.cert,
            self.key,
            ("tls-key", "--tls-cert needs --tls-key"),
            ("tls-cert", "--tls-key needs --tls-cert"),
        )?;
        Ok(pair.map(|(cert, key)| TlsFiles { cert, key }))
    }
}

/// The certificate in use and where to reload it from.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

/// Hands rustls whatever certificate is current at handshake time.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain = operator_file::read_certificates(&files.cert)?;
    let key = operator_file::read_private_key(&files.key)?;
    // Checks that the key parses and belongs to the leaf certificate.
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))
}

impl CertStore {
    /// Loads and checks the pair; the error names the file.
    pub fn load(files: &TlsFiles) -> Result<Arc<CertStore>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = read_pair(files, &provider)?;
        Ok(Arc::new(CertStore {
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(pair),
        }))
    }

    /// Re-reads the files; swaps only a valid pair in.
    pub fn reload(&self) -> Result<(), String> {
        let pair = read_pair(&self.files, &self.provider)?;
        self.current.store(Arc::new(pair));
        Ok(())
    }

    /// An acceptor whose handshakes always use the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, String> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

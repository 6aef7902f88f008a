//! The rustls settings of every outgoing connection: ring, the bundled web PKI roots or the CAs of
//! an operator's file, and a client certificate for mTLS when one is given. Reads the PEM files
//! (through [`crate::operator_file`]) when it is given some; otherwise pure.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::operator_file;

/// The client TLS settings (ring, web PKI roots, no client certificate), built once and shared by
/// every client.
pub fn default_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(build(web_roots(), None).expect("ring supports the default protocol versions"))
        })
        .clone()
}

/// Client settings trusting the CAs of `ca_file` instead of the web PKI roots, and presenting
/// `client_cert` (a PEM chain and its private key) when given; errors name the file.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    if ca_file.is_none() && client_cert.is_none() {
        return Ok((*default_config()).clone());
    }
    let roots = match ca_file {
        None => web_roots(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in operator_file::read_certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            roots
        }
    };
    build(roots, client_cert)
}

fn web_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn build(
    roots: rustls::RootCertStore,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = operator_file::read_certificates(cert)?;
            let key = operator_file::read_private_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", cert.display()))
        }
    }
}

//! The rustls client settings for the upstream: the bundled web PKI roots (the same as every other
//! outgoing client) or the CAs of a given file, and a client certificate for mTLS inside a cluster.
//! Reads the PEM files once at start-up.

use std::sync::Arc;

use super::TlsSettings;
use crate::{net, operator_file};

/// The client settings `tls` asks for; errors name the file.
pub fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    if tls.ca_file.is_none() && tls.client_cert.is_none() {
        return Ok((*net::tls_config()).clone());
    }
    let roots = match &tls.ca_file {
        None => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
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
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match &tls.client_cert {
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

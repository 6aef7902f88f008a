//! The rustls settings of every outgoing connection: ring, the bundled web PKI roots or the CAs of
//! an operator's file, and a client certificate for mTLS when one is given; and, for the monitor's
//! probes, settings that also keep the certificate a server presented ([`inspecting`]). Reads the
//! PEM files (through [`crate::operator_file`]) when it is given some; otherwise pure.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

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
    build(roots(ca_file)?, client_cert)
}

/// The CAs of `ca_file`, or the web PKI roots without one.
pub fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let Some(path) = ca_file else {
        return Ok(web_roots());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in operator_file::read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// What a server presented in a handshake made with [`inspecting`] settings, and the verdict on it.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The server's own (leaf) certificate, DER.
    pub leaf: CertificateDer<'static>,
    /// Why the chain was refused (expired, another name, an unknown issuer); `None` when valid.
    pub refused: Option<rustls::Error>,
}

/// Where [`inspecting`] settings leave the last certificate presented; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Inspection(Arc<Mutex<Option<Presented>>>);

impl Inspection {
    /// The last certificate presented, if a handshake got that far.
    pub fn presented(&self) -> Option<Presented> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Client settings that verify as every other connection does (against `roots`) and also keep
/// the certificate the server presented, even one that is refused, so a probe can report its
/// expiry. Sessions are not resumed: every handshake shows the certificate.
pub fn inspecting(
    roots: Arc<rustls::RootCertStore>,
) -> Result<(rustls::ClientConfig, Inspection), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let seen = Inspection::default();
    let verifier = Arc::new(Recording {
        inner,
        seen: seen.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok((config, seen))
}

/// The web PKI verifier, recording what it was shown.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Inspection,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        *self.seen.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Presented {
            leaf: end_entity.clone().into_owned(),
            refused: verdict.as_ref().err().cloned(),
        });
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

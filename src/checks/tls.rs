//! TLS client configurations for checks (rustls with ring, over glommio streams through
//! `futures-rustls`). Built lazily, once per registry, and shared by all its checks.
use std::cell::RefCell;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::net::{io_error_text, BoxIo};
use super::TlsSettings;

/// ALPN flavours: HTTP/1.1 checks, and HTTP/2 (gRPC, H2PING) which must negotiate "h2".
#[derive(Clone, Copy)]
pub(crate) enum Alpn {
    Http1,
    H2,
    None,
}

pub(crate) struct TlsConfigs {
    roots: Arc<RootCertStore>,
    /// Indexed by (skip_verify, alpn).
    cache: RefCell<[Option<Arc<ClientConfig>>; 6]>,
}

impl TlsConfigs {
    pub(crate) fn new(roots: Option<RootCertStore>) -> TlsConfigs {
        let roots = roots.unwrap_or_else(|| RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
        TlsConfigs {
            roots: Arc::new(roots),
            cache: RefCell::new(Default::default()),
        }
    }

    fn config(&self, skip_verify: bool, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
        let slot = usize::from(skip_verify) * 3
            + match alpn {
                Alpn::Http1 => 0,
                Alpn::H2 => 1,
                Alpn::None => 2,
            };
        if let Some(c) = &self.cache.borrow()[slot] {
            return Ok(c.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let mut cfg = if skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth()
        };
        cfg.alpn_protocols = match alpn {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::None => Vec::new(),
        };
        let cfg = Arc::new(cfg);
        self.cache.borrow_mut()[slot] = Some(cfg.clone());
        Ok(cfg)
    }

    /// Runs a TLS handshake over `stream`. `host` names the server unless the check gives a
    /// server name; IP literals verify against IP SANs and send no SNI.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        host: &str,
        settings: &TlsSettings,
        alpn: Alpn,
    ) -> Result<BoxIo, String> {
        let cfg = self.config(settings.skip_verify, alpn)?;
        let name = settings
            .server_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("tls: invalid server name {name:?}"))?;
        let tls = TlsConnector::from(cfg)
            .connect(server_name, stream)
            .await
            .map_err(|e| tls_error_text(&e))?;
        Ok(Box::pin(tls))
    }
}

fn tls_error_text(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!("tls: failed to verify certificate: {c:?}")
        }
        Some(r) => format!("tls: {r}"),
        None => format!("tls: handshake failed: {}", io_error_text(e)),
    }
}

/// Consul's `TLSSkipVerify`: any certificate is accepted; handshake signatures are still
/// checked so the session keys are at least bound to the presented key.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! TLS inside PRELOGIN, the TDS 7.x way: the TLS handshake records travel as the payload of
//! PRELOGIN (0x12) packets in both directions, and once the handshake is complete both sides switch
//! to plain TLS records on the socket with TDS packets inside them. [`PreloginWrapper`] is the
//! adapter between tokio-rustls and that framing (the mirror image of tiberius'
//! `TlsPreloginWrapper`): while handshaking it unwraps incoming 0x12 packets and wraps every flush
//! of outgoing TLS bytes into 0x12 packets; afterwards it passes bytes straight through.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::error::{Result, SimError};
use super::packet::{DEFAULT_PACKET_SIZE, HEADER_LEN, PacketHeader, PacketType, frame};

/// Builds the acceptor from PEM files (certificate chain, then private key).
pub fn load_acceptor(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| SimError::TlsConfig(format!("{}: {e}", cert_path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| SimError::TlsConfig(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(SimError::TlsConfig(format!(
            "{}: no certificate",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| SimError::TlsConfig(format!("{}: {e}", key_path.display())))?;
    // An explicit provider, so the sim does not depend on a process-wide default being installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // TLS 1.2 only, as SQL Server 2016 negotiates inside PRELOGIN. FreeTDS (GnuTLS) loses its
    // TLS 1.3 Finished message in the PRELOGIN framing and then fails with "cannot decrypt".
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // A TLS 1.3 session ticket would be written after the handshake, when the client no longer
    // expects PRELOGIN framing around TLS bytes; SQL Server sends none either.
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the server side of the handshake over PRELOGIN framing and returns the TLS stream, whose
/// wrapper already passes bytes through.
pub async fn accept<S>(acceptor: &TlsAcceptor, io: S) -> Result<TlsStream<PreloginWrapper<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut tls = acceptor.accept(PreloginWrapper::new(io)).await?;
    tls.get_mut().0.handshake_complete();
    Ok(tls)
}

/// Adapts PRELOGIN-framed TLS handshake bytes to a byte stream (see the module docs).
pub struct PreloginWrapper<S> {
    inner: S,
    handshaking: bool,
    /// Header bytes of the packet being read.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current incoming packet not yet handed to TLS.
    remaining: usize,
    /// TLS bytes written since the last flush.
    pending: Vec<u8>,
    /// Framed packets being written out, and how much of them is written.
    out: Vec<u8>,
    out_pos: usize,
    scratch: Vec<u8>,
}

impl<S> PreloginWrapper<S> {
    fn new(inner: S) -> Self {
        PreloginWrapper {
            inner,
            handshaking: true,
            header: [0; HEADER_LEN],
            header_len: 0,
            remaining: 0,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            scratch: Vec::new(),
        }
    }

    /// Switches to pass-through once the handshake is done.
    fn handshake_complete(&mut self) {
        self.handshaking = false;
    }

    /// The socket underneath (used to drop TLS after a login-only handshake).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginWrapper<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.handshaking {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            if this.remaining == 0 {
                // Read (the rest of) the next packet header, never more than the caller can take,
                // because the bytes may turn out to be raw TLS that must be handed over as-is.
                let room = (HEADER_LEN - this.header_len).min(buf.remaining());
                let mut hb =
                    ReadBuf::new(&mut this.header[this.header_len..this.header_len + room]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut hb))?;
                let n = hb.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(())); // EOF: TLS reports the truncated handshake.
                }
                this.header_len += n;
                // tokio-rustls keeps reading after the handshake is done, and the client's first
                // record after its Finished is raw TLS (content type 0x14-0x17), not a PRELOGIN
                // packet: from here on everything passes through.
                if (0x14..=0x17).contains(&this.header[0]) {
                    tracing::debug!(bytes = ?&this.header[..this.header_len], "raw TLS after the handshake");
                    this.handshaking = false;
                    buf.put_slice(&this.header[..this.header_len]);
                    this.header_len = 0;
                    return Poll::Ready(Ok(()));
                }
                if this.header_len < HEADER_LEN {
                    continue;
                }
                this.header_len = 0;
                let header = PacketHeader::parse(&this.header)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if header.ty != PacketType::PreLogin.as_u8() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "expected a PRELOGIN packet during the TLS handshake, got type 0x{:02x}",
                            header.ty
                        ),
                    )));
                }
                this.remaining = header.length - HEADER_LEN;
                tracing::debug!(
                    len = header.length,
                    status = header.status,
                    "PRELOGIN-wrapped TLS packet"
                );
                continue;
            }
            let want = this.remaining.min(buf.remaining());
            this.scratch.resize(want, 0);
            let mut rb = ReadBuf::new(&mut this.scratch[..want]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            buf.put_slice(&this.scratch[..n]);
            this.remaining -= n;
            return Poll::Ready(Ok(()));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginWrapper<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.handshaking {
            return Pin::new(&mut self.inner).poll_write(cx, data);
        }
        self.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.out_pos == this.out.len() && !this.pending.is_empty() {
            tracing::debug!(
                len = this.pending.len(),
                "sending TLS bytes in PRELOGIN packets"
            );
            this.out = frame(PacketType::PreLogin, 0, &this.pending, DEFAULT_PACKET_SIZE);
            this.out_pos = 0;
            this.pending.clear();
        }
        while this.out_pos < this.out.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.out[this.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            this.out_pos += n;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

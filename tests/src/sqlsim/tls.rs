//! TLS inside PRELOGIN, the TDS 7.x way: the TLS handshake records travel as the payload of
//! PRELOGIN (0x12) packets in both directions, and once the handshake is complete both sides switch
//! to plain TLS records on the socket with TDS packets inside them. [`PreloginWrapper`] is the
//! adapter between tokio-rustls and that framing (the mirror image of tiberius'
//! `TlsPreloginWrapper`): while handshaking it unwraps incoming 0x12 packets and wraps every flush
//! of outgoing TLS bytes into 0x12 packets; afterwards it passes bytes straight through.
//!
//! With `--tls-max-version 1.0` (or 1.1) the sim is an unpatched SQL Server 2012/2014, whose TLS
//! (SChannel, restricted by SQL Server to SSL 3.0/TLS 1.0 until the KB3135244 update) cannot answer
//! a TLS 1.2-only ClientHello such as rustls sends: no version in common, and none of rustls'
//! AEAD suites exists in TLS 1.0. What Microsoft documents for that case ("SSL errors after
//! upgrading to TLS 1.2") is the server closing the connection in answer to the Client Hello,
//! which the client reports as error 10054 "forcibly closed by the remote host": a TCP reset, the
//! default [`OldReply::Reset`]. The other answers a TLS 1.0-only server can give are there too: a
//! TLS 1.0 ServerHello (record and server version 0x0301, as a server that found a suite replies;
//! rustls must refuse it) and a fatal alert in a TLS 1.0 record (protocol_version or
//! handshake_failure). None of them completes a handshake, so the certificate is never sent;
//! [`accept`] ends the connection with an error the session logs.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::error::{Result, SimError};
use super::packet::{
    DEFAULT_PACKET_SIZE, HEADER_LEN, PacketHeader, PacketType, frame, read_message, write_message,
};

/// The sim's TLS: a rustls acceptor, or an old server's refusal (see the module docs).
pub struct Acceptor {
    rustls: TlsAcceptor,
    old: Option<OldTls>,
}

/// An instance that speaks only TLS 1.0 or 1.1 (`--tls-max-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldTls {
    /// 0x0301 (TLS 1.0) or 0x0302 (TLS 1.1): the record and ServerHello version it uses.
    pub version: u16,
    /// How it answers a ClientHello it cannot serve.
    pub reply: OldReply,
}

/// An old server's answer to a TLS 1.2-only ClientHello (`--tls-old-reply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldReply {
    /// `reset`: drops the connection with a TCP reset (SQL Server 2012/2014 as documented).
    Reset,
    /// `server-hello`: a ServerHello of its own version.
    ServerHello,
    /// `alert-version`: a fatal protocol_version (70) alert.
    AlertVersion,
    /// `alert-handshake`: a fatal handshake_failure (40) alert.
    AlertHandshake,
}

impl OldTls {
    /// From `--tls-max-version` (`1.0`, `1.1`; `1.2` and up mean the normal server, `None`) and
    /// `--tls-old-reply` (default `reset`).
    pub fn parse(max_version: Option<&str>, reply: Option<&str>) -> Result<Option<OldTls>> {
        let version = match max_version {
            None | Some("1.2" | "1.3") => {
                return match reply {
                    None => Ok(None),
                    Some(_) => Err(SimError::TlsConfig(
                        "--tls-old-reply needs --tls-max-version 1.0 or 1.1".into(),
                    )),
                };
            }
            Some("1.0") => 0x0301,
            Some("1.1") => 0x0302,
            Some(other) => {
                return Err(SimError::TlsConfig(format!(
                    "--tls-max-version {other}: expected 1.0, 1.1, 1.2 or 1.3"
                )));
            }
        };
        let reply = match reply.unwrap_or("reset") {
            "reset" => OldReply::Reset,
            "server-hello" => OldReply::ServerHello,
            "alert-version" => OldReply::AlertVersion,
            "alert-handshake" => OldReply::AlertHandshake,
            other => {
                return Err(SimError::TlsConfig(format!(
                    "--tls-old-reply {other}: expected reset, server-hello, alert-version or alert-handshake"
                )));
            }
        };
        Ok(Some(OldTls { version, reply }))
    }
}

/// A transport the sim can end with a TCP reset rather than a FIN.
pub trait Reset {
    /// Makes the coming close a reset.
    fn reset_on_close(&self);
}

impl Reset for TcpStream {
    fn reset_on_close(&self) {
        // SO_LINGER 0: close() sends RST at once, as a peer that aborts the connection does.
        if let Err(e) = self.set_zero_linger() {
            tracing::debug!(error = %e, "cannot set SO_LINGER 0");
        }
    }
}

/// Builds the acceptor from PEM files (certificate chain, then private key); `old` makes it an
/// old server's (see the module docs).
pub fn load_acceptor(cert_path: &Path, key_path: &Path, old: Option<OldTls>) -> Result<Acceptor> {
    Ok(Acceptor {
        rustls: load_rustls(cert_path, key_path)?,
        old,
    })
}

fn load_rustls(cert_path: &Path, key_path: &Path) -> Result<TlsAcceptor> {
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
pub async fn accept<S>(acceptor: &Acceptor, io: S) -> Result<TlsStream<PreloginWrapper<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Reset,
{
    if let Some(old) = acceptor.old {
        return Err(refuse(old, io).await);
    }
    let mut tls = acceptor.rustls.accept(PreloginWrapper::new(io)).await?;
    tls.get_mut().0.handshake_complete();
    Ok(tls)
}

/// An old server's answer to the client's first handshake flight; always ends the connection.
async fn refuse<S>(old: OldTls, mut io: S) -> SimError
where
    S: AsyncRead + AsyncWrite + Unpin + Reset,
{
    let hello = match read_message(&mut io).await {
        Ok(Some(m)) => m,
        Ok(None) => return SimError::protocol("client closed before its ClientHello"),
        Err(e) => return e,
    };
    // A TLS handshake record (22) holding a ClientHello (1); anything else is not a TLS client.
    if hello.ty != PacketType::PreLogin || hello.payload.first() != Some(&22) {
        return SimError::protocol("expected a ClientHello in a PRELOGIN packet");
    }
    if hello.payload.get(5) != Some(&1) {
        return SimError::protocol("the first handshake message is not a ClientHello");
    }
    let [major, minor] = old.version.to_be_bytes();
    let reply = match old.reply {
        OldReply::Reset => {
            io.reset_on_close();
            drop(io);
            return SimError::protocol(format!(
                "TLS {}: reset the connection in answer to a ClientHello (--tls-max-version)",
                version_name(old.version)
            ));
        }
        OldReply::ServerHello => server_hello(old.version),
        OldReply::AlertVersion => vec![21, major, minor, 0, 2, 2, 70],
        OldReply::AlertHandshake => vec![21, major, minor, 0, 2, 2, 40],
    };
    let sent = write_message(
        &mut io,
        PacketType::PreLogin,
        0,
        &reply,
        DEFAULT_PACKET_SIZE,
    )
    .await;
    // The client answers with an alert of its own (or closes); wait briefly for it, so the client
    // reads the reply before the close rather than a reset of unread data.
    if sent.is_ok() {
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(2), read_message(&mut io)).await;
    }
    let _ = io.shutdown().await;
    SimError::protocol(format!(
        "TLS {}: answered a ClientHello with {:?} (--tls-max-version)",
        version_name(old.version),
        old.reply
    ))
}

fn version_name(v: u16) -> &'static str {
    if v == 0x0301 { "1.0" } else { "1.1" }
}

/// A ServerHello record of `version` choosing TLS_RSA_WITH_AES_128_CBC_SHA (0x002F), the suite
/// SChannel on Windows Server 2012 prefers among those TLS 1.0 has, with no extensions.
fn server_hello(version: u16) -> Vec<u8> {
    let [major, minor] = version.to_be_bytes();
    let mut body = vec![major, minor];
    body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11))); // server random
    body.push(0); // empty session id
    body.extend([0x00, 0x2F]); // cipher suite
    body.push(0); // compression: null
    let mut handshake = vec![2]; // server_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![22, major, minor];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn old_tls_flags() {
        assert_eq!(OldTls::parse(None, None).unwrap(), None);
        assert_eq!(OldTls::parse(Some("1.2"), None).unwrap(), None);
        assert_eq!(
            OldTls::parse(Some("1.0"), None).unwrap(),
            Some(OldTls {
                version: 0x0301,
                reply: OldReply::Reset
            })
        );
        assert_eq!(
            OldTls::parse(Some("1.1"), Some("alert-version"))
                .unwrap()
                .map(|o| (o.version, o.reply)),
            Some((0x0302, OldReply::AlertVersion))
        );
        assert!(OldTls::parse(Some("1.0"), Some("shrug")).is_err());
        assert!(OldTls::parse(Some("2.0"), None).is_err());
        assert!(OldTls::parse(None, Some("reset")).is_err());
    }

    #[test]
    fn server_hello_is_a_tls10_record() {
        let r = server_hello(0x0301);
        // Record: handshake, version 3.1, length of the rest.
        assert_eq!(&r[..3], &[22, 3, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([r[3], r[4]])), r.len() - 5);
        // ServerHello, 24-bit length, server_version 3.1, then the suite after random and id.
        assert_eq!(r[5], 2);
        assert_eq!(r[9..11], [3, 1]);
        assert_eq!(r[43], 0, "empty session id");
        assert_eq!(r[44..46], [0x00, 0x2F]);
    }
}

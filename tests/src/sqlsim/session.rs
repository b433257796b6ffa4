//! One client connection, from PRELOGIN to close: encryption negotiation and optional TLS, LOGIN7
//! and its response, then a loop answering SQL batches, RPCs, Transaction Manager requests and
//! Attention. The token sequences follow `reference/tds_min_server.py`:
//! a batch statement ends with DONE (MORE unless last); a statement inside an RPC ends with
//! DONEINPROC carrying MORE (pytds depends on it), then RETURNSTATUS and DONEPROC.
//! Any [`SimError`] ends this connection only.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::engine::errors;
use super::engine::eval::Params;
use super::engine::{Engine, ProcArg, ResultItem, SessionInfo, StatementResult};
use super::error::{Result, SimError};
use super::login::{self, Login7};
use super::packet::{
    DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE, MIN_PACKET_SIZE, Message, PacketType, read_message,
    write_message,
};
use super::prelogin::{self, TlsMode};
use super::rpc;
use super::tls;
use super::tokens::{
    DONE_ATTN, DONE_COUNT, DONE_ERROR, DONE_MORE, DoneKind, EnvChange, TokenWriter,
};
use super::wire::{Reader, decode_utf16};

/// Time allowed from connect to a completed login, so idle or stuck sockets do not pile up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// TDS versions sqlsim can acknowledge (as LOGIN7 carries them); others get 7.4.
const KNOWN_TDS_VERSIONS: [u32; 4] = [0x7200_0009, 0x730A_0003, 0x730B_0003, 0x7400_0004];

/// Program name in LOGINACK.
const PROG_NAME: &str = "Microsoft SQL Server";

/// A byte stream a connection can run over: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What every connection shares.
pub struct Shared {
    /// The engine (shared with the Agent task).
    pub engine: std::sync::Arc<Engine>,
    /// TLS acceptor when a certificate is configured.
    pub tls: Option<tls::Acceptor>,
}

struct Conn {
    io: Box<dyn Io>,
    packet_size: usize,
    spid: u16,
    /// TDS 7.2+ clients prefix requests with ALL_HEADERS.
    all_headers: bool,
}

impl Conn {
    async fn send(&mut self, w: TokenWriter) -> Result<()> {
        write_message(
            &mut *self.io,
            PacketType::TabularResult,
            self.spid,
            &w.into_bytes(),
            self.packet_size,
        )
        .await
    }

    async fn read(&mut self) -> Result<Option<Message>> {
        read_message(&mut *self.io).await
    }
}

/// Serves one accepted socket until the client leaves, misbehaves, is killed or the server stops.
pub async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let login = tokio::time::timeout(LOGIN_TIMEOUT, handshake(stream, &shared));
    let (mut conn, mut session, kill) = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = login => match r {
            Err(_) => return Err(SimError::protocol("login not completed in time")),
            Ok(r) => match r? {
                Some(x) => x,
                None => return Ok(()),
            },
        },
    };
    let spid = session.spid;
    let result = request_loop(&mut conn, &mut session, &shared, &shutdown, &kill).await;
    shared.engine.close_session(spid);
    result
}

/// PRELOGIN, optional TLS, LOGIN7. `None` when the login was refused (already answered).
async fn handshake(
    mut stream: TcpStream,
    shared: &Shared,
) -> Result<Option<(Conn, SessionInfo, CancellationToken)>> {
    let Some(msg) = read_message(&mut stream).await? else {
        return Ok(None);
    };
    if msg.ty != PacketType::PreLogin {
        return Err(SimError::protocol(format!(
            "expected PRELOGIN, got {:?}",
            msg.ty
        )));
    }
    let req = prelogin::parse(&msg.payload)?;
    let (answer, mode) = prelogin::negotiate(req.encryption, shared.tls.is_some());
    let reply = prelogin::reply(answer, shared.engine.version());
    write_message(
        &mut stream,
        PacketType::TabularResult,
        0,
        &reply,
        DEFAULT_PACKET_SIZE,
    )
    .await?;

    let (io, login_msg): (Box<dyn Io>, Option<Message>) = match (mode, &shared.tls) {
        (TlsMode::Full, Some(acceptor)) => {
            let mut tls = tls::accept(acceptor, stream).await?;
            let m = read_message(&mut tls).await?;
            (Box::new(tls), m)
        }
        (TlsMode::LoginOnly, Some(acceptor)) => {
            // TLS protects LOGIN7 only; the client then drops TLS without close_notify and the
            // rest of the conversation, login response included, is plain TCP.
            let mut tls = tls::accept(acceptor, stream).await?;
            let m = read_message(&mut tls).await?;
            let (wrapper, _) = tls.into_inner();
            (Box::new(wrapper.into_inner()), m)
        }
        _ => {
            let m = read_message(&mut stream).await?;
            (Box::new(stream), m)
        }
    };
    let Some(login_msg) = login_msg else {
        return Ok(None);
    };
    if login_msg.ty != PacketType::Login7 {
        return Err(SimError::protocol(format!(
            "expected LOGIN7, got {:?}",
            login_msg.ty
        )));
    }
    let login = login::parse(&login_msg.payload)?;
    let mut conn = Conn {
        io,
        packet_size: DEFAULT_PACKET_SIZE,
        spid: 0,
        all_headers: login.tds_version >= 0x7200_0000,
    };
    let server_name = shared.engine.server_name();

    let refuse = |conn_msgs: Vec<super::tokens::ServerMessage>| {
        let mut w = TokenWriter::new();
        for m in &conn_msgs {
            w.message(m, &server_name);
        }
        w.done(DoneKind::Done, DONE_ERROR, 0, 0);
        w
    };
    if !shared.engine.check_login(&login.user_name, &login.password) {
        tracing::info!(user = %login.user_name, host = %login.host_name, "login failed: bad credentials");
        conn.send(refuse(vec![errors::login_failed(&login.user_name)]))
            .await?;
        return Ok(None);
    }
    let is_admin = shared
        .engine
        .is_admin_login(&login.user_name, &login.password);
    let (session, kill) = match shared.engine.open_session(
        &login.user_name,
        is_admin,
        &login.host_name,
        &login.app_name,
        &login.database,
    ) {
        Ok(s) => s,
        Err(m) => {
            conn.send(refuse(vec![m, errors::login_failed(&login.user_name)]))
                .await?;
            return Ok(None);
        }
    };
    conn.spid = session.spid;
    let packet_size = negotiated_packet_size(&login);
    conn.send(login_response(
        &login,
        &session,
        packet_size,
        &server_name,
        shared.engine.version(),
    ))
    .await?;
    conn.packet_size = packet_size;
    tracing::info!(spid = session.spid, user = %login.user_name, host = %login.host_name, app = %login.app_name, "login");
    Ok(Some((conn, session, kill)))
}

fn negotiated_packet_size(login: &Login7) -> usize {
    match login.packet_size as usize {
        0 => DEFAULT_PACKET_SIZE,
        n => n.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
    }
}

fn login_response(
    login: &Login7,
    session: &SessionInfo,
    packet_size: usize,
    server_name: &str,
    version: (u8, u8, u16),
) -> TokenWriter {
    let mut w = TokenWriter::new();
    w.env_change(&EnvChange::Database {
        new: session.database.clone(),
        old: "master".into(),
    });
    w.message(&errors::changed_database(&session.database), server_name);
    w.env_change(&EnvChange::Collation);
    w.env_change(&EnvChange::PacketSize(packet_size as u32));
    let tds = if KNOWN_TDS_VERSIONS.contains(&login.tds_version) {
        login.tds_version
    } else {
        0x7400_0004
    };
    w.login_ack(tds, PROG_NAME, version);
    w.done(DoneKind::Done, 0, 0, 0);
    w
}

async fn request_loop(
    conn: &mut Conn,
    session: &mut SessionInfo,
    shared: &Shared,
    shutdown: &CancellationToken,
    kill: &CancellationToken,
) -> Result<()> {
    let engine = &shared.engine;
    let server_name = engine.server_name();
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = kill.cancelled() => return Ok(()),
            m = conn.read() => match m? {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        let w = match msg.ty {
            PacketType::SqlBatch => {
                let body = rpc::strip_all_headers(&msg.payload, conn.all_headers)?;
                let text = decode_utf16(body)?;
                let results = engine
                    .execute_batch(session, &text, &Params::new(), "batch")
                    .await;
                if results.iter().any(|r| r.disconnect) {
                    return Ok(());
                }
                let mut w = TokenWriter::new();
                encode_results(&mut w, &results, DoneKind::Done, &server_name);
                w
            }
            PacketType::Rpc => {
                let body = rpc::strip_all_headers(&msg.payload, conn.all_headers)?;
                let calls = rpc::parse(body)?;
                match answer_rpc(engine, session, calls, &server_name).await {
                    Some(w) => w,
                    None => return Ok(()),
                }
            }
            PacketType::TransactionManager => {
                let body = rpc::strip_all_headers(&msg.payload, conn.all_headers)?;
                let result = transaction_request(engine, session, body)?;
                let mut w = TokenWriter::new();
                encode_results(&mut w, &[result], DoneKind::Done, &server_name);
                w
            }
            PacketType::Attention => {
                // Requests run to completion before the next message is read, so there is nothing
                // left to cancel: acknowledge.
                let mut w = TokenWriter::new();
                w.done(DoneKind::Done, DONE_ATTN, 0, 0);
                w
            }
            other => {
                return Err(SimError::protocol(format!(
                    "unexpected {other:?} message after login"
                )));
            }
        };
        conn.send(w).await?;
    }
}

/// Writes statement results; each ends with `kind`. In a batch the last DONE has no MORE bit;
/// inside an RPC every DONEINPROC has it, because RETURNSTATUS and DONEPROC follow.
fn encode_results(
    w: &mut TokenWriter,
    results: &[StatementResult],
    kind: DoneKind,
    server_name: &str,
) {
    let in_proc = kind == DoneKind::DoneInProc;
    if results.is_empty() {
        w.done(kind, if in_proc { DONE_MORE } else { 0 }, 0, 0);
        return;
    }
    for (i, r) in results.iter().enumerate() {
        for item in &r.items {
            match item {
                ResultItem::Env(e) => w.env_change(e),
                ResultItem::Message(m) => w.message(m, server_name),
                ResultItem::Rows(set) => {
                    w.col_metadata(&set.columns);
                    for row in &set.rows {
                        w.row(&set.columns, row);
                    }
                }
            }
        }
        let mut status = 0;
        if in_proc || i + 1 < results.len() {
            status |= DONE_MORE;
        }
        if r.error {
            status |= DONE_ERROR;
        }
        if r.count.is_some() {
            status |= DONE_COUNT;
        }
        w.done(kind, status, r.curcmd, r.count.unwrap_or(0));
    }
}

/// Answers an RPC request; `None` when a fault asks to drop the connection instead.
async fn answer_rpc(
    engine: &Engine,
    session: &mut SessionInfo,
    calls: Vec<rpc::RpcCall>,
    server_name: &str,
) -> Option<TokenWriter> {
    let mut w = TokenWriter::new();
    let n = calls.len();
    for (i, call) in calls.into_iter().enumerate() {
        let more = if i + 1 < n { DONE_MORE } else { 0 };
        let by_name = match &call.proc_ref {
            _ if call.proc_ref.is_sp_executesql() => None,
            rpc::ProcRef::Name(name) => Some(name.clone()),
            rpc::ProcRef::Id(_) => {
                w.message(
                    &errors::procedure_not_found(&call.proc_ref.name()),
                    server_name,
                );
                w.done(DoneKind::DoneProc, DONE_ERROR | more, 0, 0);
                continue;
            }
        };
        let names: Vec<String> = call.params.iter().map(|p| p.name.clone()).collect();
        let args: Vec<ProcArg> = call
            .params
            .into_iter()
            .map(|p| ProcArg {
                name: Some(p.name).filter(|n| !n.is_empty() && n.starts_with('@')),
                value: p.value,
                output: p.status & 0x01 != 0,
            })
            .collect();
        let results = match by_name {
            None => {
                let values = args.into_iter().map(|a| (a.name, a.value)).collect();
                engine.sp_executesql(session, values).await
            }
            Some(name) => vec![engine.rpc_procedure(session, &name, args).await],
        };
        if results.iter().any(|r| r.disconnect) {
            return None;
        }
        encode_results(&mut w, &results, DoneKind::DoneInProc, server_name);
        let first_error = results
            .iter()
            .flat_map(|r| &r.items)
            .find_map(|item| match item {
                ResultItem::Message(m) if m.is_error() => Some(m.number),
                _ => None,
            });
        let last = results.last();
        let status = last
            .and_then(|r| r.return_status)
            .unwrap_or(first_error.unwrap_or(0));
        w.return_status(status);
        // OUTPUT parameters come back as RETURNVALUE tokens, after RETURNSTATUS, as SQL Server
        // sends them.
        for o in last.map(|r| r.outputs.as_slice()).unwrap_or_default() {
            let name = names.get(o.arg).map_or("", String::as_str);
            w.return_value(o.arg as u16, name, o.ty, &o.value);
        }
        let status = if first_error.is_some() { DONE_ERROR } else { 0 };
        w.done(DoneKind::DoneProc, status | more, 0, 0);
    }
    Some(w)
}

/// Transaction Manager request (MS-TDS 2.2.6.9): 5 begin, 7 commit, 8 rollback, 9 save; commit and
/// rollback may ask to begin a new transaction right away (fBeginXact), as pytds does.
fn transaction_request(
    engine: &Engine,
    session: &mut SessionInfo,
    body: &[u8],
) -> Result<StatementResult> {
    let mut r = Reader::new(body);
    let request = r.u16_le()?;
    let begin_again = |r: &mut Reader<'_>| -> Result<bool> {
        let name_len = r.u8()? as usize;
        r.skip(name_len)?;
        Ok(r.remaining() > 0 && r.u8()? & 0x01 != 0)
    };
    Ok(match request {
        5 => engine.begin_tran(session),
        7 | 8 => {
            let again = begin_again(&mut r)?;
            // A TM commit/rollback ends the whole transaction, whatever its nesting.
            let mut result = if request == 7 {
                session.tran_count = session.tran_count.min(1);
                engine.commit_tran(session)
            } else {
                engine.rollback_tran(session)
            };
            if again && !result.error {
                result.items.extend(engine.begin_tran(session).items);
            }
            result
        }
        // Save points and DTC requests are acknowledged without effect.
        0..=9 => StatementResult::done(),
        other => {
            return Err(SimError::protocol(format!(
                "unknown transaction manager request {other}"
            )));
        }
    })
}

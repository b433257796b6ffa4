//! Runs one instruction: validate, fence, consult the journal, execute with the deadline, journal
//! the outcome. Independent of the session so a result outlives the stream it was asked on: a
//! finished operation's result is sent on whatever session is open then (see
//! `session::Outbox`), and is in the journal for a coordinator that asks again.
//!
//! Errors: a stale epoch, an invalid instruction or an expired deadline are answered without
//! touching the journal (nothing ran). An interrupted or still-running op id is answered from the
//! journal. A journal write failure refuses the operation (retryable): running without a record
//! would break the at-most-once promise.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use failback_proto::model::{ActiveServers, Instruction, Operation, PoolStateValue, Recovery};
use failback_proto::pb;

use crate::error::Error;
use crate::exec::files::{Files, Progress};
use crate::exec::lync::{self, LyncShell};
use crate::exec::sql::SqlBackend;
use crate::exec::sql::tsql::{self, RecoveryClause};
use crate::fencing::EpochStore;
use crate::journal::{Entry, Journal};
use crate::outbox::Outbox;
use failback_proto::clock::unix_ms as now_ms;

/// Executes instructions.
pub struct Dispatcher {
    /// Fencing.
    pub epochs: Arc<EpochStore>,
    /// At-most-once record.
    pub journal: Arc<Journal>,
    /// The files backend, when roots are configured.
    pub files: Option<Files>,
    /// The sql backend, when `[sql]` is configured.
    pub sql: Option<SqlBackend>,
    /// The lync backend, when `[lync]` is configured.
    pub lync: Option<LyncShell>,
    /// Where progress updates go.
    pub outbox: Outbox,
}

/// Forwards the latest progress of one operation as `OperationUpdate`s, at most every
/// [`UPDATE_EVERY`], until dropped.
struct ProgressReporter {
    tx: Arc<tokio::sync::watch::Sender<Progress>>,
}

/// Minimum spacing of progress updates on the wire.
const UPDATE_EVERY: Duration = Duration::from_millis(500);

impl ProgressReporter {
    fn start(op_id: String, outbox: Outbox) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel(Progress { done: 0, total: 0 });
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = *rx.borrow_and_update();
                let update = pb::OperationUpdate {
                    op_id: op_id.clone(),
                    percent: (p.total > 0).then(|| {
                        u32::try_from(p.done.saturating_mul(100) / p.total).unwrap_or(100)
                    }),
                    message: format!("{} of {} bytes", p.done, p.total),
                };
                outbox
                    .send(pb::AgentMessage {
                        body: Some(pb::agent_message::Body::Update(update)),
                    })
                    .await;
                tokio::time::sleep(UPDATE_EVERY).await;
            }
        });
        ProgressReporter { tx: Arc::new(tx) }
    }

    /// A sink for backends that report percent complete (SQL Server's `percent_complete`).
    fn percent_sink(&self) -> crate::exec::sql::PercentSink {
        let tx = self.tx.clone();
        Arc::new(move |pct| {
            let _ = tx.send(Progress {
                done: u64::from(pct),
                total: 100,
            });
        })
    }

    fn callback(&self) -> impl FnMut(Progress) + Send + '_ {
        move |p| {
            let _ = self.tx.send(p);
        }
    }
}

fn recovery_clause(r: &Recovery) -> RecoveryClause {
    match r {
        Recovery::Recovery => RecoveryClause::Recovery,
        Recovery::NoRecovery => RecoveryClause::NoRecovery,
        Recovery::Standby(p) => RecoveryClause::Standby(p.as_str().to_string()),
    }
}

fn pool_state_out(pool: &str, info: &lync::PoolStateInfo) -> pb::PoolStateInfo {
    pb::PoolStateInfo {
        pool_fqdn: pool.to_string(),
        identity: info.identity.clone(),
        state: match info.pool_state {
            lync::PoolState::Normal => pb::PoolStateValue::Normal,
            lync::PoolState::FailedOver => pb::PoolStateValue::FailedOver,
        }
        .into(),
    }
}

fn pool_servers_out(s: &lync::PoolServers) -> pb::PoolServersInfo {
    pb::PoolServersInfo {
        pool_fqdn: s.pool_fqdn.clone(),
        service_identity: s.service_identity.clone(),
        servers: s.computers.clone(),
        active_servers: s.active_servers.clone().unwrap_or_default(),
    }
}

fn unix_ms(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn error_result(
    op_id: &str,
    kind: pb::ErrorKind,
    retryable: bool,
    message: String,
) -> pb::OperationResult {
    pb::OperationResult {
        op_id: op_id.to_string(),
        outcome: Some(pb::operation_result::Outcome::Error(pb::OperationError {
            kind: kind.into(),
            retryable,
            message,
            sql_error: 0,
        })),
        replayed: false,
    }
}

impl Dispatcher {
    /// Handles one raw instruction and returns its result.
    pub async fn handle(&self, raw: pb::Instruction) -> pb::OperationResult {
        let op_id = raw.op_id.clone();
        let instruction = match Instruction::try_from(raw).map_err(Error::from) {
            Ok(i) => i,
            Err(e) => return self.refused(&op_id, e),
        };
        if let Err(e) = self.epochs.accept(instruction.epoch) {
            // Test-only mutation (never in release builds): the scenarios show §9.1 breaks.
            if !failback_proto::test_break::broken(failback_proto::test_break::AGENT_EPOCH_CHECK) {
                return self.refused(&op_id, e);
            }
        }
        let now = now_ms();
        if instruction.deadline_unix_ms != 0 && instruction.deadline_unix_ms <= now {
            return error_result(
                &op_id,
                pb::ErrorKind::DeadlineExceeded,
                false,
                format!(
                    "deadline passed {} ms before the instruction arrived; nothing was run",
                    now - instruction.deadline_unix_ms
                ),
            );
        }
        let begun = self.journal.begin(
            &instruction.op_id,
            instruction.epoch,
            instruction.operation.name(),
        );
        // Test-only mutation (never in release builds): forget the journal, run the op again.
        let begun = match begun {
            Ok(Some(_))
                if failback_proto::test_break::broken(
                    failback_proto::test_break::AGENT_JOURNAL_REPLAY,
                ) =>
            {
                Ok(None)
            }
            other => other,
        };
        match begun {
            Err(e) => error_result(&op_id, pb::ErrorKind::Backend, true, format!("not run: {e}")),
            Ok(Some(Entry::Finished(r))) => {
                tracing::info!(%op_id, "repeated op id answered from the journal");
                let mut r = *r;
                r.replayed = true;
                r
            }
            Ok(Some(Entry::Running)) => error_result(
                &op_id,
                pb::ErrorKind::InProgress,
                true,
                "this op id is still running; its result follows when it finishes".into(),
            ),
            Ok(Some(Entry::Interrupted)) => error_result(
                &op_id,
                pb::ErrorKind::Interrupted,
                false,
                "the agent restarted while this operation ran; its outcome is unknown (probe the target state; it will not be re-run under this op id)".into(),
            ),
            Ok(None) => {
                let result = self.execute(&instruction).await;
                if let Err(e) = self.journal.finish(&instruction.op_id, &result) {
                    tracing::error!(%op_id, "operation ran but its outcome could not be journaled: {e}");
                }
                result
            }
        }
    }

    /// Executes one validated operation on its backend.
    async fn run(&self, op_id: &str, op: &Operation) -> Result<pb::operation_output::Kind, Error> {
        use pb::operation_output::Kind as Out;
        match op {
            Operation::Ping => Ok(Out::Pong(pb::Pong {})),
            Operation::TcpLatency { endpoint, samples } => {
                crate::exec::host::tcp_latency(endpoint, *samples)
                    .await
                    .map(Out::Latency)
            }
            Operation::DescribeInstance => self.sql()?.describe_instance().await.map(Out::Instance),
            Operation::DatabaseState(dbs) => self
                .sql()?
                .database_state(dbs)
                .await
                .map(Out::DatabaseStates),
            Operation::MirroringState(dbs) => self
                .sql()?
                .mirroring_state(dbs)
                .await
                .map(Out::MirroringStates),
            Operation::RemoveMirroring(db) => self.sql()?.remove_mirroring(db).await.map(Out::Done),
            Operation::ListSessions(db) => self.sql()?.list_sessions(db).await.map(Out::Sessions),
            Operation::KillSessions {
                database,
                program_names,
            } => self
                .sql()?
                .kill_sessions(database, program_names)
                .await
                .map(Out::Killed),
            Operation::BackupDatabase {
                database,
                file,
                copy_only,
                compression,
                name,
                description,
            } => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                let options = tsql::BackupOptions {
                    copy_only: *copy_only,
                    compression: *compression,
                    name: name.clone(),
                    description: description.clone(),
                };
                self.sql()?
                    .backup_database(
                        database,
                        file.as_str(),
                        &options,
                        self.files.as_ref(),
                        reporter.percent_sink(),
                    )
                    .await
                    .map(Out::Backup)
            }
            Operation::BackupLog { database, file } => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                self.sql()?
                    .backup_log(
                        database,
                        file.as_str(),
                        self.files.as_ref(),
                        reporter.percent_sink(),
                    )
                    .await
                    .map(Out::Backup)
            }
            Operation::VerifyBackup(file) => self
                .sql()?
                .verify_backup(file.as_str())
                .await
                .map(Out::Verify),
            Operation::ReadBackupHeader(file) => self
                .sql()?
                .read_backup_header(file.as_str())
                .await
                .map(Out::Verify),
            Operation::RestoreDatabase {
                database,
                file,
                recovery,
                replace,
                expected_sha256,
            } => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                self.sql()?
                    .restore_database(
                        crate::exec::sql::RestoreRequest {
                            db: database,
                            file: file.as_str(),
                            recovery: &recovery_clause(recovery),
                            replace: *replace,
                            expected_sha256: expected_sha256.as_deref(),
                        },
                        self.files.as_ref(),
                        reporter.percent_sink(),
                    )
                    .await
                    .map(Out::Restore)
            }
            Operation::RestoreLog {
                database,
                file,
                recovery,
                expected_sha256,
            } => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                self.sql()?
                    .restore_log(
                        database,
                        file.as_str(),
                        &recovery_clause(recovery),
                        expected_sha256.as_deref(),
                        self.files.as_ref(),
                        reporter.percent_sink(),
                    )
                    .await
                    .map(Out::Restore)
            }
            Operation::RecoverDatabase(db) => {
                self.sql()?.recover_database(db).await.map(Out::Restore)
            }
            Operation::SetReadOnly {
                database,
                read_only,
            } => self
                .sql()?
                .set_read_only(database, *read_only)
                .await
                .map(Out::Done),
            Operation::LogShippingStatus(db) => self
                .sql()?
                .log_shipping_status(db)
                .await
                .map(Out::LogShipping),
            Operation::SetupLogShippingPrimary(p) => self
                .sql()?
                .setup_log_shipping_primary(p)
                .await
                .map(Out::LogShippingSetup),
            Operation::SetupLogShippingSecondary(s) => self
                .sql()?
                .setup_log_shipping_secondary(s)
                .await
                .map(Out::LogShippingSetup),
            Operation::RemoveLogShippingPrimary(db) => self
                .sql()?
                .remove_log_shipping_primary(db)
                .await
                .map(Out::Done),
            Operation::RemoveLogShippingSecondary(db) => self
                .sql()?
                .remove_log_shipping_secondary(db)
                .await
                .map(Out::Done),
            Operation::RunJob(name) => self
                .sql()?
                .run_job(name.as_str())
                .await
                .map(Out::JobStarted),
            Operation::JobOutcome {
                job_name,
                after_instance_id,
            } => self
                .sql()?
                .job_outcome(job_name.as_str(), *after_instance_id)
                .await
                .map(Out::JobOutcome),
            Operation::CheckAgentAccess {
                read_folder,
                write_folder,
                timeout_seconds,
            } => self
                .sql()?
                .check_agent_access(
                    read_folder,
                    write_folder,
                    Duration::from_secs(u64::from(*timeout_seconds)),
                )
                .await
                .map(Out::AgentAccess),
            Operation::CheckEngineShareWrite { directory } => self
                .sql()?
                .check_engine_share_write(directory, self.files.as_ref())
                .await
                .map(Out::EngineShareWrite),
            Operation::PoolState(pool) => {
                let info = self.lync()?.pool_state(pool.as_str()).await?;
                Ok(Out::PoolState(pool_state_out(pool.as_str(), &info)))
            }
            Operation::SetPoolState(pool, state) => {
                let want = match state {
                    PoolStateValue::Normal => lync::PoolState::Normal,
                    PoolStateValue::FailedOver => lync::PoolState::FailedOver,
                };
                let shell = self.lync()?;
                // Probe before acting: a pool already in the wanted state is left alone.
                let current = shell.pool_state(pool.as_str()).await?;
                let info = if current.pool_state == want {
                    current
                } else {
                    shell.set_pool_state(pool.as_str(), want).await?
                };
                Ok(Out::PoolState(pool_state_out(pool.as_str(), &info)))
            }
            Operation::PoolServers(pool) => {
                let s = self.lync()?.pool_servers(pool.as_str()).await?;
                Ok(Out::PoolServers(pool_servers_out(&s)))
            }
            Operation::SetActiveServers(pool, change) => {
                let names = |v: &Vec<failback_proto::model::Fqdn>| {
                    v.iter().map(|f| f.as_str().to_string()).collect()
                };
                let change = match change {
                    ActiveServers::Replace(v) => lync::ActiveServersChange::Replace(names(v)),
                    ActiveServers::Add(v) => lync::ActiveServersChange::Add(names(v)),
                    ActiveServers::Remove(v) => lync::ActiveServersChange::Remove(names(v)),
                    ActiveServers::Clear => lync::ActiveServersChange::Clear,
                };
                let s = self
                    .lync()?
                    .set_active_servers(pool.as_str(), &change)
                    .await?;
                Ok(Out::PoolServers(pool_servers_out(&s)))
            }
            Operation::FileStat(p) => {
                let st = self.files()?.stat(p.as_str()).await?;
                Ok(Out::FileInfo(pb::FileInfo {
                    path: p.as_str().to_string(),
                    exists: st.exists,
                    is_dir: st.is_dir,
                    size: st.size,
                    modified_unix_ms: unix_ms(st.modified),
                }))
            }
            Operation::FileChecksum(p) => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                let c = self
                    .files()?
                    .checksum(p.as_str(), reporter.callback())
                    .await?;
                Ok(Out::Checksum(pb::Checksum {
                    path: p.as_str().to_string(),
                    sha256: c.sha256,
                    size: c.size,
                }))
            }
            Operation::FileList { directory, pattern } => {
                let pattern = if pattern.is_empty() {
                    "*"
                } else {
                    pattern.as_str()
                };
                let listing = self.files()?.list(directory.as_str(), pattern).await?;
                let dir = directory.as_str().trim_end_matches(['/', '\\']);
                let sep = if dir.contains('\\') { '\\' } else { '/' };
                Ok(Out::FileListing(pb::FileListing {
                    files: listing
                        .entries
                        .into_iter()
                        .map(|e| pb::FileInfo {
                            path: format!("{dir}{sep}{}", e.name),
                            exists: true,
                            is_dir: e.is_dir,
                            size: e.size,
                            modified_unix_ms: unix_ms(e.modified),
                        })
                        .collect(),
                }))
            }
            Operation::FileCopy {
                source,
                destination,
                expected_sha256,
            } => {
                let reporter = ProgressReporter::start(op_id.to_string(), self.outbox.clone());
                let c = self
                    .files()?
                    .copy(
                        source.as_str(),
                        destination.as_str(),
                        expected_sha256.clone(),
                        reporter.callback(),
                    )
                    .await?;
                Ok(Out::Copy(pb::CopyResult {
                    destination: destination.as_str().to_string(),
                    bytes: c.bytes_copied,
                    resumed_from: c.resumed_from,
                    sha256: c.sha256,
                }))
            }
            Operation::FileDelete(p) => {
                let deleted = self.files()?.delete(p.as_str()).await?;
                Ok(Out::Done(pb::Done {
                    changed: deleted,
                    detail: if deleted {
                        "deleted".into()
                    } else {
                        "already absent".into()
                    },
                }))
            }
            Operation::FreeSpace(p) => {
                let available = self.files()?.free_space(p.as_str()).await?;
                Ok(Out::Space(pb::Space {
                    path: p.as_str().to_string(),
                    available_bytes: available,
                    total_bytes: 0,
                }))
            }
        }
    }

    fn lync(&self) -> Result<&LyncShell, Error> {
        self.lync
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this agent has no [lync] shell configured".into()))
    }

    fn sql(&self) -> Result<&SqlBackend, Error> {
        self.sql
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this agent has no [sql] instance configured".into()))
    }

    fn files(&self) -> Result<&Files, Error> {
        self.files
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this agent has no [files] roots configured".into()))
    }

    fn refused(&self, op_id: &str, e: Error) -> pb::OperationResult {
        tracing::warn!(%op_id, "instruction refused: {e}");
        pb::OperationResult {
            op_id: op_id.to_string(),
            outcome: Some(pb::operation_result::Outcome::Error(e.to_operation_error())),
            replayed: false,
        }
    }

    async fn execute(&self, i: &Instruction) -> pb::OperationResult {
        let budget = if i.deadline_unix_ms == 0 {
            Duration::MAX
        } else {
            Duration::from_millis(i.deadline_unix_ms.saturating_sub(now_ms()))
        };
        let run = self.run(i.op_id.as_str(), &i.operation);
        let outcome: Result<pb::operation_output::Kind, Error> = match tokio::time::timeout(
            budget, run,
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                return error_result(
                    i.op_id.as_str(),
                    pb::ErrorKind::DeadlineExceeded,
                    false,
                    "stopped at the deadline; the operation may have partly happened (probe before retrying)".into(),
                );
            }
        };
        pb::OperationResult {
            op_id: i.op_id.to_string(),
            outcome: Some(match outcome {
                Ok(kind) => {
                    pb::operation_result::Outcome::Output(pb::OperationOutput { kind: Some(kind) })
                }
                Err(e) => pb::operation_result::Outcome::Error(e.to_operation_error()),
            }),
            replayed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failback_proto::model::{Epoch, OpId};

    fn dispatcher(dir: &std::path::Path) -> Dispatcher {
        Dispatcher {
            epochs: Arc::new(EpochStore::open(dir).unwrap()),
            journal: Arc::new(Journal::open(dir).unwrap()),
            files: None,
            sql: None,
            lync: None,
            outbox: Outbox::default(),
        }
    }

    fn ping(op: &str, epoch: u64) -> pb::Instruction {
        pb::Instruction {
            op_id: op.into(),
            epoch,
            deadline_unix_ms: now_ms() + 60_000,
            operation: Some(pb::Operation {
                kind: Some(pb::operation::Kind::Ping(pb::Ping {})),
            }),
        }
    }

    fn kind(r: &pb::OperationResult) -> Option<pb::ErrorKind> {
        match &r.outcome {
            Some(pb::operation_result::Outcome::Error(e)) => Some(e.kind()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn replays_and_fences() {
        let dir = tempfile::tempdir().unwrap();
        let d = dispatcher(dir.path());
        let r = d.handle(ping("r/p/s/1", 7)).await;
        assert_eq!(kind(&r), None);
        assert!(!r.replayed);
        let r = d.handle(ping("r/p/s/1", 7)).await;
        assert!(r.replayed, "second time comes from the journal");
        let r = d.handle(ping("r/p/s/2", 6)).await;
        assert_eq!(kind(&r), Some(pb::ErrorKind::StaleEpoch));
        assert_eq!(d.epochs.highest(), Epoch(7));
        let mut late = ping("r/p/s/3", 7);
        late.deadline_unix_ms = 1;
        assert_eq!(
            kind(&d.handle(late).await),
            Some(pb::ErrorKind::DeadlineExceeded)
        );
        assert_eq!(
            d.journal.get(&OpId::new("r/p/s/3").unwrap()),
            None,
            "an expired instruction is not journaled"
        );
    }
}

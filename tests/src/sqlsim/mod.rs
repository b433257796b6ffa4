//! sqlsim: a SQL Server stand-in that speaks TDS 7.4 over TCP, keeps its state on disk and answers
//! like SQL Server, errors included. tiberius 0.13, FreeTDS `tsql` and pytds log in to it; the lab
//! and the tests use it wherever a real SQL Server would stand.
//!
//! # Module map
//!
//! | module | role |
//! |---|---|
//! | [`server`] | `run(config, listener, shutdown)`: accept loop, one task per connection |
//! | [`session`] | one connection: PRELOGIN, TLS, LOGIN7, then batches / RPC / TM / Attention |
//! | [`packet`] | packet framing, validation, splitting at the negotiated size |
//! | [`prelogin`], [`login`], [`rpc`] | request decoders (ALL_HEADERS lives in `rpc`) |
//! | [`tokens`], [`types`] | response token writers and data type encodings |
//! | [`tls`] | TLS inside PRELOGIN packets (rustls) |
//! | [`sql`] | tokenizer, statement parser, AST |
//! | [`engine`] | statement execution, sessions, error catalogue, persisted state |
//! | `engine::backup` | BACKUP / RESTORE and the backup file format (`backup/format.rs`) |
//! | `engine::files` | SQL Server path → local path mapping, `xp_fileexist`, `xp_dirtree` |
//! | `engine::fault` | fault switches (`--fault`, `EXEC sqlsim.fault`) |
//! | `engine::mirror` | mirroring between sims through a shared registry file |
//! | `engine::requests` | requests in flight (`sys.dm_exec_requests`, `percent_complete`) |
//! | `engine::msdb` | SQL Server Agent (jobs, schedules, history, the scheduler task), log shipping procedures and `sqllogship`, the Agent account's access table, msdb tables |
//! | [`statement_log`] | JSON-lines log of every statement received |
//! | [`clock`], [`wire`], [`error`] | dates, byte helpers, the one error enum |
//!
//! When you add a statement: parse it in `sql/parser.rs` (+ `ast.rs`, and `Statement::kind` for
//! fault switches), name its command in `engine/requests.rs`, execute it in `engine/`, add its
//! errors to `engine/errors.rs`, and list it below. When you add a column type: `types.rs`
//! (TYPE_INFO, value, parameter decoding) and `engine/eval.rs` (`value_type`). When you change
//! the backup file layout: bump `backup::format::FORMAT`.
//!
//! # Command line
//!
//! `sqlsim --listen ADDR --data-dir DIR --sa-password PW [--server-name NAME]
//! [--tls-cert PEM --tls-key PEM] [--admin-login L --admin-password P] [--db-size-mb N]
//! [--path-map PREFIX=DIR]… [--mirror-registry FILE] [--fault SPEC]… [--agent-access PATH=MODE]…
//! [--lab-short-schedules] [--product-version X.Y.Z.W] [--stale-server-name HOST\INST]
//! [--utc-offset-minutes N]`. The
//! admin login is the only one that can run the sim-only `sqlsim.*` procedures; for every other
//! login, `sa` included, they do not exist (2812), so the agent can never reach them.
//!
//! Instance identity, kept in the state file (a flag given overrides the saved value):
//!
//! - `--product-version X.Y.Z.W` (default for a new instance `13.0.6300.2`, SQL Server 2016
//!   SP3): SERVERPROPERTY('ProductVersion'), the version in PRELOGIN / LOGINACK, the release in
//!   `@@VERSION`, and what backups record (HEADERONLY SoftwareVersionMajor / Minor / Build,
//!   DatabaseVersion, CompatibilityLevel). A backup from a newer release does not restore
//!   (3169, `engine/backup/version.rs`). Rust: `SqlSim::with_product_version` (harness).
//! - `--stale-server-name HOST\INST`: `@@SERVERNAME` returns it while SERVERPROPERTY
//!   ('ServerName') / ('MachineName') return the real name (`--server-name`), as on a host that
//!   was renamed or rebuilt from an image without fixing `sys.servers` (`sp_dropserver` /
//!   `sp_addserver`). Rust: `SqlSim::with_stale_server_name`.
//!
//! The host's clock: `--utc-offset-minutes N` (default 0; not kept in the state file, a host's
//! zone is configuration) makes the host N minutes ahead of UTC. Everything SQL Server reports in
//! local time is then local (GETDATE(), SYSDATETIME(), CURRENT_TIMESTAMP, HEADERONLY's dates —
//! the writer's, wherever read — msdb's date columns without `_utc`, Agent schedules and
//! run_date/run_time), GETUTCDATE(), SYSUTCDATETIME() and the `_utc` columns stay UTC,
//! DATEPART(TZOFFSET, SYSDATETIMEOFFSET()) is N, and a restore's backupset row carries the
//! writer's zone in `time_zone` (see `clock.rs`, `engine/backup/format.rs`). A fixed offset: no
//! daylight saving time. SYSDATETIMEOFFSET() is answered only inside DATEPART(TZOFFSET, …): the
//! sim's wire types have no datetimeoffset. Rust: `SqlSim::with_utc_offset_minutes`.
//!
//! # Lab-only deviations from SQL Server
//!
//! Off unless the flag is given; without them sqlsim answers as SQL Server does.
//!
//! - `--lab-short-schedules`: SQL Server Agent job schedules in seconds
//!   (`@freq_subday_type = 2`) may run every second. msdb's `sp_verify_schedule` refuses an
//!   interval under 10 seconds with Msg 14278 (`The schedule for this job is invalid (reason:
//!   The specified '@freq_subday_interval' is invalid.).`), and so does sqlsim by default. The
//!   lab and the tests start their instances with it only where the harness sets up the
//!   pre-existing, DBA-made log shipping on 1-2 s schedules (`harness/ssms.rs`), so a drill
//!   takes minutes; what the product configures (PChat's 15 minutes) is checked under SQL
//!   Server's rule. See `engine/msdb/schedules.rs`.
//!
//! # Protocol
//!
//! PRELOGIN (NOT_SUP echoed to NOT_SUP; with `--tls-cert/--tls-key`, OFF → TLS for LOGIN7 only,
//! ON/REQUIRED → full TLS), LOGIN7 with SQL authentication (login `sa`, the configured password),
//! LOGINACK for TDS 7.4 (or the client's 7.2/7.3 version), ENVCHANGE database / collation / packet
//! size / begin-commit-rollback transaction, SQL batches, RPC `sp_executesql` (ProcID 10 or by
//! name, named or positional parameters), Transaction Manager begin/commit/rollback, Attention.
//! Malformed input closes that connection only.
//!
//! # Supported SQL subset
//!
//! Keywords are case-insensitive; `N'…'` and `'…'` strings (doubled quotes), `[bracketed]]` and
//! `"quoted"` identifiers, `--` and nested `/* */` comments; statements separated by `;` or not.
//!
//! - `USE db`
//! - `DECLARE @a type [= value][, …]`, `SET @a = value`, `IF condition statement | BEGIN … END
//!   [ELSE …]`, `BEGIN … END`: batch variables (types parsed, not enforced), `@@ERROR` = the last
//!   statement's first error number; enough for the SSMS log shipping scripts (pchat-dr.md §6.7).
//!   `EXEC [@rc =] proc … @p = @v OUTPUT` stores the return code and OUTPUT values; an RPC by
//!   name gets RETURNSTATUS and one RETURNVALUE token per OUTPUT parameter.
//! - Scalar subqueries `(SELECT …)` in expressions (512 when they return more than one row).
//! - `SET option[, option] value` and `SET TRANSACTION ISOLATION LEVEL …` (accepted, no effect)
//! - `SELECT [ALL | DISTINCT] [TOP n] list [FROM t [alias] [[INNER] JOIN t2 [alias] ON cond]…] [WHERE cond]
//!   [ORDER BY expr [ASC|DESC], …]` where expressions are literals, `@parameters`, columns,
//!   `+ - * / %`, comparisons, `AND/OR/NOT`, `IN (…)`, `IS [NOT] NULL`, aggregates `COUNT(*)`,
//!   `COUNT/COUNT_BIG/MAX/MIN/SUM(x)` (no GROUP BY), globals `@@VERSION`, `@@SERVERNAME`,
//!   `@@SERVICENAME`, `@@SPID`, `@@TRANCOUNT`, `@@ERROR`, `@@ROWCOUNT`, `@@LANGUAGE`, functions
//!   `SERVERPROPERTY(…)` (ProductVersion, ProductLevel, ProductMajorVersion, Edition,
//!   EngineEdition, ServerName, MachineName, InstanceName, InstanceDefaultDataPath,
//!   InstanceDefaultLogPath, Collation, IsClustered, IsHadrEnabled; others NULL; returned as
//!   nvarchar, not sql_variant), `DB_ID([name])`, `DB_NAME([id])`, `GETDATE()`, `GETUTCDATE()`,
//!   `SYSDATETIME()`, `SYSUTCDATETIME()`, `SUSER_SNAME()`, `HOST_NAME()`, `APP_NAME()`, `ISNULL`,
//!   `COALESCE`, `UPPER`, `LOWER`, `LEN`.
//! - Tables: `sys.databases` (name, database_id, create_date, compatibility_level, collation_name,
//!   user_access, user_access_desc, is_read_only, state, state_desc, is_in_standby,
//!   recovery_model, recovery_model_desc), `sys.master_files` (database_id, file_id, type,
//!   type_desc, data_space_id, name, physical_name, state, state_desc, size),
//!   `sys.database_mirroring` (database_id and the mirroring_* columns, NULL when not mirrored),
//!   `sys.dm_exec_sessions` (session_id, login_time, host_name, program_name, login_name, status,
//!   is_user_process, and from `--product-version` 11 on database_id, open_transaction_count),
//!   `sys.sysprocesses` (spid, ecid, dbid, loginame, hostname, program_name, status, cmd,
//!   open_tran, login_time, last_batch; one row per execution context) — both list the
//!   background tasks with system SPIDs as well (`engine/system.rs`; the admin login moves a
//!   task into a database with `EXEC sqlsim.system_task N'CHECKPOINT', N'mgc'` and gives a
//!   session parallel contexts with `EXEC sqlsim.parallel spid, n`) — and, in
//!   every user database, `dbo.Messages` (id BIGINT
//!   IDENTITY, room NVARCHAR(128), author NVARCHAR(128), body NVARCHAR(MAX), posted_at
//!   DATETIME2(7) default SYSUTCDATETIME()). Names may be qualified (`mgc.dbo.Messages`,
//!   `master.sys.databases`).
//! - `INSERT [INTO] dbo.Messages [(cols)] VALUES (…)[, (…)]`
//! - `CREATE DATABASE x`, `DROP DATABASE [IF EXISTS] x[, y]`
//! - `ALTER DATABASE x SET SINGLE_USER | RESTRICTED_USER | MULTI_USER | ONLINE | OFFLINE
//!   [WITH ROLLBACK IMMEDIATE | ROLLBACK AFTER n | NO_WAIT]`, `SET RECOVERY FULL|BULK_LOGGED|SIMPLE`,
//!   `SET PARTNER OFF`, `SET PARTNER FAILOVER` on a SYNCHRONIZED principal (the roles swap;
//!   `engine/mirror.rs`), and other PARTNER/WITNESS clauses, which need a mirrored database. Where
//!   SQL Server would wait for other users to leave, sqlsim fails at once with 5070.
//! - `KILL spid`: the victim's connection is closed.
//! - `EXEC [@rc =] sp_executesql N'…', N'@p …', @p = …`, `EXEC (N'…')`; any other procedure → 2812.
//!   A bare procedure name at the start of a batch is an EXEC, as in SQL Server.
//! - `BEGIN TRAN[SACTION]`, `COMMIT`, `ROLLBACK`: counted and reported with ENVCHANGE, but changes
//!   are applied immediately and never undone.
//! - `BACKUP DATABASE | LOG db TO DISK = file [WITH FORMAT | INIT | NOINIT | SKIP | CHECKSUM |
//!   COMPRESSION | COPY_ONLY | STATS [= n] | NAME = … | DESCRIPTION = … | NORECOVERY (log) | …]`;
//!   `db` and `file` may be `@parameters` (sp_executesql). The file is real: a media header and
//!   one or more backup sets, each a header + payload (rows, state, filler up to
//!   `--db-size-mb`), see `engine/backup/format.rs`. NOINIT (the default) appends a set
//!   (Position 2, 3, …), INIT replaces the sets and keeps the media header, FORMAT writes a new
//!   media header; appending to a file that is not a readable backup is 3266. The file is
//!   written as `<file>.<backup_set_guid>.writing` beside it and renamed into place when
//!   complete, so no reader (log shipping's copy job, RESTORE) ever sees a torn backup. INFO
//!   messages 3211 (STATS), 4035 (pages per file, "on file <position>"), 3014 (done) as SQL
//!   Server words them; they arrive with the statement's DONE, not streamed while it runs. A set
//!   records whether it has checksums (`WITH CHECKSUM`; the sim's own sqllogship, like
//!   sqllogship.exe, never asks for them).
//! - `RESTORE DATABASE db FROM DISK = file [WITH FILE = n, REPLACE, RECOVERY | NORECOVERY |
//!   STANDBY = undo, MOVE 'logical' TO 'physical', CHECKSUM, STATS …]`, `RESTORE LOG db FROM DISK
//!   = file WITH [FILE = n,] NORECOVERY | RECOVERY | STANDBY = … [, CHECKSUM]`, `RESTORE DATABASE
//!   | LOG db WITH RECOVERY`, `RESTORE VERIFYONLY | HEADERONLY | FILELISTONLY FROM DISK = file
//!   [WITH FILE = n, CHECKSUM]` (HEADERONLY / FILELISTONLY columns: pchat-dr.md §6.3, SQL Server
//!   2016 names and types; HEADERONLY lists every set, or set n with FILE = n; the others read
//!   set 1 without FILE). `CHECKSUM` on a set without checksums is 3187. Before anything changes,
//!   RESTORE DATABASE plans every file (MOVE target or the backup's path): a folder that does not
//!   exist (through the path map) is 5133, a file another database uses is 1834, each followed by
//!   3156, then 3119 (`engine/backup/plan.rs`). Physical files are recorded
//!   (sys.master_files), not created. BACKUP, RESTORE DATABASE / LOG and VERIFYONLY inside a
//!   transaction are 3021; HEADERONLY / FILELISTONLY are allowed there (`INSERT … EXEC`).
//! - `EXEC master.dbo.xp_fileexist N'path'` (columns `File Exists`, `File is a Directory`,
//!   `Parent Directory Exists`; the OUTPUT-parameter form is not supported) and
//!   `EXEC master.sys.xp_dirtree N'path', depth, file` (`subdirectory`, `depth`[, `file`]), in a
//!   batch or as an RPC by name, acting on the mapped local path.
//! - Paths: POSIX absolute paths are used as is; `--path-map PREFIX=DIR` rules map Windows
//!   prefixes (`\\fileserver\pchat-ls=/srv/share`); other Windows paths go under
//!   `<data-dir>/fs/<drive letter | unc>/…`. `..` never climbs out.
//! - More views: `sys.dm_exec_requests` (session_id, request_id, start_time, status, command,
//!   database_id, blocking_session_id, wait_type, percent_complete REAL, estimated_completion_time,
//!   total_elapsed_time; `percent_complete` moves during BACKUP / RESTORE / VERIFYONLY),
//!   `sys.dm_server_services` (servicename, startup_type, startup_type_desc, status, status_desc, process_id,
//!   last_startup_time as DATETIME2 instead of DATETIMEOFFSET, service_account, filename,
//!   is_clustered, cluster_nodename; rows `SQL Server (INST)` and `SQL Server Agent (INST)`,
//!   persisted), `sys.database_recovery_status` (database_id, database_guid, family_guid,
//!   last_log_backup_lsn = where the next log backup starts, …).
//! - SQL Server Agent and log shipping (`engine/msdb/`): msdb.dbo `sp_add_job`, `sp_add_jobstep`,
//!   `sp_add_jobserver`, `sp_add_schedule`, `sp_attach_schedule`, `sp_add_jobschedule`,
//!   `sp_update_job`, `sp_delete_job`, `sp_start_job`, `sp_stop_job` (unqualified only while in
//!   msdb); `sp_add_log_shipping_primary_database`, `_primary_secondary`, `_alert_job`,
//!   `_secondary_primary`, `_secondary_database`, `sp_delete_log_shipping_*`,
//!   `sp_help_log_shipping_monitor`, `sys.sp_check_log_shipping_monitor_alert` (from any
//!   database); tables `msdb.dbo.sysjobs`, `sysjobsteps`, `sysschedules`, `sysjobschedules`,
//!   `sysjobhistory`, `sysjobactivity`, `syssessions`, `log_shipping_*` (primary_databases,
//!   primary_secondaries, monitor_primary, secondary, secondary_databases, monitor_secondary,
//!   monitor_history_detail, monitor_error_detail), `restorehistory`, `backupset`,
//!   `backupmediafamily`. Schedules are checked as msdb's `sp_verify_schedule` does (a seconds
//!   interval under 10 is 14278 unless `--lab-short-schedules`). The Agent runs due jobs while
//!   its `sys.dm_server_services` row is Running; CmdExec steps accept `sqllogship.exe`, `dir`,
//!   `type`, `echo … >`, `del`, `copy` (see `msdb/steps.rs`) and run as the Agent account,
//!   subject to its access table (`msdb/access.rs`).
//! - Sim-only, admin login only: `EXEC sqlsim.fault N'spec'` (see `engine/fault.rs`; without an
//!   argument lists the armed faults), `EXEC sqlsim.mirror N'db', N'partner server' [, N'state'
//!   [, N'safety']]` (see `engine/mirror.rs`), `EXEC sqlsim.service N'SQL Server Agent',
//!   N'Stopped' [, N'Manual' [, N'account']]` (stopping / starting the Agent service stops /
//!   starts the Agent: running jobs are canceled, a new `syssessions` row opens),
//!   `EXEC sqlsim.agent_access [N'path', N'rw|read|write|none|default']` (the Agent account's
//!   folder access table; without arguments lists it), `EXEC sqlsim.engine_access [N'path',
//!   N'rw|read|write|none|default']` (folders the Database Engine's account may not write:
//!   BACKUP there fails with 3201, OS error 5, then 3013; see `engine/engine_access.rs`).
//!
//! A batch is parsed completely before it runs: a syntax error means nothing in it executes.
//! Errors 102, 105, 113, 137, 156, 195, 207, 208, 209 and 8120 end the batch; the others end only
//! their statement.
//!
//! # Error numbers sqlsim can return
//!
//! | number | when |
//! |---|---|
//! | 102 | Incorrect syntax near '…' |
//! | 105 | Unclosed quotation mark after the character string '…' |
//! | 109 / 110 | INSERT column list longer / shorter than VALUES |
//! | 113 | Missing end comment mark '*/' |
//! | 137 | Must declare the scalar variable "@x" |
//! | 147 | aggregate outside a select list |
//! | 156 | Incorrect syntax near the keyword '…' |
//! | 195 | '…' is not a recognized built-in function name |
//! | 201 | sp_executesql without a statement; a required msdb / log shipping parameter missing |
//! | 207 | Invalid column name '…' |
//! | 208 | Invalid object name '…' |
//! | 209 | Ambiguous column name '…' |
//! | 213 | INSERT without column list, wrong number of values |
//! | 217 | dynamic SQL nested too deeply |
//! | 241 | Conversion failed when converting date and/or time from character string |
//! | 245 | Conversion failed when converting the nvarchar value '…' to data type int |
//! | 263 | Must specify table to select from (`SELECT *` without FROM) |
//! | 515 | Cannot insert the value NULL into column '…' |
//! | 544 | Cannot insert explicit value for identity column |
//! | 823 | the state file could not be written |
//! | 911 | USE, BACKUP or RESTORE LOG of a database that does not exist |
//! | 924 | USE of a SINGLE_USER database someone else is in |
//! | 927 | the database is in the middle of a restore (USE, a table in it, BACKUP of it) |
//! | 942 | the database is offline |
//! | 1416 | PARTNER/WITNESS clause on a database that is not mirrored |
//! | 1418 | `SET PARTNER = 'TCP://…'`: sims have no mirroring endpoint (use `sqlsim.mirror`) |
//! | 1465 | `sqlsim.mirror` on a database not ONLINE in FULL recovery |
//! | 1801 | CREATE DATABASE of an existing database |
//! | 1834 | RESTORE DATABASE would put a file where another database's file is (then 3156 state 4) |
//! | 2812 | Could not find stored procedure '…' (EXEC or RPC) |
//! | 3701 | DROP DATABASE of a missing database |
//! | 3702 | DROP DATABASE of a database in use |
//! | 3708 | DROP DATABASE of a system database |
//! | 3013 | BACKUP / RESTORE / VERIFY … is terminating abnormally (after the cause) |
//! | 3014 | INFO: BACKUP / RESTORE successfully processed N pages |
//! | 3021 | BACKUP, RESTORE DATABASE / LOG or VERIFYONLY inside a transaction |
//! | 3101 | RESTORE while a session (the caller included) is in the database |
//! | 3104 | RESTORE over (or WITH RECOVERY of) a mirroring partner |
//! | 3117 | RESTORE LOG onto a recovered database |
//! | 3135 | RESTORE DATABASE from a log backup, or RESTORE LOG from a full one |
//! | 3147 | BACKUP / RESTORE of tempdb |
//! | 3119 | RESTORE planning failed (after the 5133 / 1834 + 3156 pairs, before 3013) |
//! | 3153 | RESTORE … WITH RECOVERY of a database already recovered |
//! | 3154 | RESTORE over a different database (family GUID) without REPLACE, or a foreign log |
//! | 3156 | a file of RESTORE DATABASE cannot go where planned (state 3 after 5133, 4 after 1834) |
//! | 3159 | RESTORE over an ONLINE FULL-recovery database with a log chain, without REPLACE |
//! | 3169 | RESTORE DATABASE / LOG or VERIFYONLY of a set a newer release wrote (`--product-version`) |
//! | 3183 | the backup payload does not match its checksum (RESTORE, VERIFYONLY) |
//! | 3187 | RESTORE / VERIFYONLY `WITH CHECKSUM` of a set written without checksums |
//! | 3201 | cannot open backup device (missing file: OS error 2, folder: 3, access: 5 — also BACKUP to a folder `sqlsim.engine_access` denies the engine's account, state 1) |
//! | 3211 | INFO: n percent processed (STATS) |
//! | 3234 | MOVE of a logical file the backup does not have |
//! | 3241 | media family incorrectly formed (not a backup, truncated, damaged header) |
//! | 3262 | INFO: The backup set on file n is valid. |
//! | 3266 | BACKUP NOINIT onto a file that is not a readable backup (damaged, torn, not a backup) |
//! | 3902 / 3903 | COMMIT / ROLLBACK without BEGIN TRANSACTION |
//! | 3906 | INSERT into a read-only (STANDBY) database |
//! | 4035 | INFO: Processed N pages for database … |
//! | 4038 | FILE = n beyond the device's last backup set |
//! | 4208 | BACKUP LOG under SIMPLE recovery |
//! | 4214 | BACKUP LOG without a full backup (no log chain) |
//! | 4305 | RESTORE LOG that begins after the database's LSN (gap); nothing changes |
//! | 4326 | RESTORE LOG that ends before the database's LSN (already applied); nothing changes |
//! | 4060 | login's database cannot be opened (followed by 18456) |
//! | 5011 | ALTER DATABASE of a missing database, or one RESTORING (followed by 5069) |
//! | 5060 | INFO: ROLLBACK IMMEDIATE ended other sessions |
//! | 5069 | ALTER DATABASE statement failed (after 5011 / 5070) |
//! | 5070 | ALTER DATABASE needs other users out (no ROLLBACK IMMEDIATE) |
//! | 5133 | RESTORE DATABASE file into a folder that does not exist (OS error 3; then 3156 state 3) |
//! | 6104 / 6106 / 6107 | KILL of oneself / an unknown SPID / a system SPID |
//! | 5701 | INFO: Changed database context to '…' |
//! | 512 | a scalar subquery returned more than one row |
//! | 8120 | column in a select list with aggregates |
//! | 8144 / 8145 | too many arguments / unknown `@parameter` for an msdb or log shipping procedure |
//! | 14234 / 14269 | sp_add_jobserver: unknown server / job already targeted |
//! | 14243 / 14247 | INFO: Job '…' started / stopped successfully. |
//! | 14256 | sp_start_job of a job without a job server |
//! | 14261 | a job (or step) with that name already exists |
//! | 14262 | the specified @job_name / @job_id / @schedule_id does not exist |
//! | 14266 / 14273 / 14294 / 14371 | bad @step_id, @freq_type or @freq_subday_type / no schedule given / neither @job_id nor @job_name / ambiguous schedule name |
//! | 14278 | invalid schedule: a seconds interval under 10 (1 with `--lab-short-schedules`), an interval under 1, bad day fields |
//! | 14295 | a schedule with @freq_type 0x2 (OnDemand) |
//! | 15010 | log shipping procedure naming a database that does not exist |
//! | 22022 | SQLServerAgent not running; job already running (start); job not running (stop) |
//! | 32009 / 32012 / 32013 / 32024 | log shipping entry already exists (without @overwrite = 1) |
//! | 32010 / 32014 / 32023 | database is not a log shipping primary / secondary; primary not registered |
//! | 32011 / 32025 | removal while secondaries remain |
//! | 32015 | log shipping primary in SIMPLE recovery |
//! | 32022 | a log shipping job name taken by a job outside the Log Shipping category |
//! | 8134 | Divide by zero error encountered |
//! | 8178 | sp_executesql parameter declared but not supplied |
//! | 17809 | no free SPID |
//! | 18456 | Login failed for user '…' (the connection is then closed) |
//! | 50000 | a sim-only procedure was misused (admin login only) |
//! | any | the `fail backup\|restore N ERROR` fault (SQL Server's text for the numbers above) |

pub mod clock;
pub mod engine;
pub mod error;
pub mod login;
pub mod packet;
pub mod prelogin;
pub mod rpc;
pub mod server;
pub mod session;
pub mod sql;
pub mod statement_log;
pub mod tls;
pub mod tokens;
pub mod types;
pub mod wire;

pub use error::{Result, SimError};
pub use server::{Config, run};

//! The catalogue of SQL Server errors sqlsim raises: number, severity class, state and message
//! text as SQL Server words them, so clients (and the agent's error mapping) see the real thing.
//! `sqlsim/mod.rs` lists the same numbers for readers; add a constructor here and a line there.

use crate::sqlsim::tokens::ServerMessage;

/// 102: syntax error near a token.
pub fn syntax_near(near: &str) -> ServerMessage {
    ServerMessage::new(102, 1, 15, format!("Incorrect syntax near '{near}'."))
}

/// 156: syntax error near a reserved keyword.
pub fn syntax_near_keyword(kw: &str) -> ServerMessage {
    ServerMessage::new(
        156,
        1,
        15,
        format!("Incorrect syntax near the keyword '{kw}'."),
    )
}

/// 105: a string or quoted identifier is not closed.
pub fn unclosed_quote(after: &str) -> ServerMessage {
    ServerMessage::new(
        105,
        1,
        15,
        format!("Unclosed quotation mark after the character string '{after}'."),
    )
}

/// 113: a block comment is not closed.
pub fn missing_end_comment() -> ServerMessage {
    ServerMessage::new(113, 1, 15, "Missing end comment mark '*/'.")
}

/// 137: a variable that is neither declared nor passed as a parameter.
pub fn undeclared_variable(name: &str) -> ServerMessage {
    ServerMessage::new(
        137,
        2,
        15,
        format!("Must declare the scalar variable \"{name}\"."),
    )
}

/// 195: unknown built-in function.
pub fn unknown_function(name: &str) -> ServerMessage {
    ServerMessage::new(
        195,
        10,
        15,
        format!("'{name}' is not a recognized built-in function name."),
    )
}

/// 207: unknown column.
pub fn invalid_column(name: &str) -> ServerMessage {
    ServerMessage::new(207, 1, 16, format!("Invalid column name '{name}'."))
}

/// 208: unknown table or view.
pub fn invalid_object(name: &str) -> ServerMessage {
    ServerMessage::new(208, 1, 16, format!("Invalid object name '{name}'."))
}

/// 209: a column name matches more than one table of the FROM clause.
pub fn ambiguous_column(name: &str) -> ServerMessage {
    ServerMessage::new(209, 1, 16, format!("Ambiguous column name '{name}'."))
}

/// 213: INSERT without a column list has the wrong number of values.
pub fn insert_column_count() -> ServerMessage {
    ServerMessage::new(
        213,
        1,
        16,
        "Column name or number of supplied values does not match table definition.",
    )
}

/// 109 / 110: INSERT column list and VALUES differ in length.
pub fn insert_values_mismatch(more_columns: bool) -> ServerMessage {
    if more_columns {
        ServerMessage::new(
            109,
            1,
            15,
            "There are more columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.",
        )
    } else {
        ServerMessage::new(
            110,
            1,
            15,
            "There are fewer columns in the INSERT statement than values specified in the VALUES clause. The number of values in the VALUES clause must match the number of columns specified in the INSERT statement.",
        )
    }
}

/// 241: a string could not be converted to a date/time.
pub fn datetime_conversion() -> ServerMessage {
    ServerMessage::new(
        241,
        1,
        16,
        "Conversion failed when converting date and/or time from character string.",
    )
}

/// 245: a string could not be converted to a number.
pub fn int_conversion(text: &str) -> ServerMessage {
    ServerMessage::new(
        245,
        1,
        16,
        format!("Conversion failed when converting the nvarchar value '{text}' to data type int."),
    )
}

/// 515: NULL into a NOT NULL column.
pub fn null_not_allowed(column: &str, table: &str) -> ServerMessage {
    ServerMessage::new(
        515,
        2,
        16,
        format!(
            "Cannot insert the value NULL into column '{column}', table '{table}'; column does not allow nulls. INSERT fails."
        ),
    )
}

/// 544: explicit value for an IDENTITY column.
pub fn identity_insert(table: &str) -> ServerMessage {
    ServerMessage::new(
        544,
        1,
        16,
        format!(
            "Cannot insert explicit value for identity column in table '{table}' when IDENTITY_INSERT is set to OFF."
        ),
    )
}

/// 911: USE of a database that does not exist.
pub fn database_not_found(name: &str) -> ServerMessage {
    ServerMessage::new(
        911,
        1,
        16,
        format!("Database '{name}' does not exist. Make sure that the name is entered correctly."),
    )
}

/// 927: the database is being restored.
pub fn database_restoring(name: &str) -> ServerMessage {
    ServerMessage::new(
        927,
        2,
        14,
        format!("Database '{name}' cannot be opened. It is in the middle of a restore."),
    )
}

/// 942: the database is offline.
pub fn database_offline(name: &str) -> ServerMessage {
    ServerMessage::new(
        942,
        4,
        14,
        format!("Database '{name}' cannot be opened because it is offline."),
    )
}

/// 1801: CREATE DATABASE of an existing name.
pub fn database_exists(name: &str) -> ServerMessage {
    ServerMessage::new(
        1801,
        3,
        16,
        format!("Database '{name}' already exists. Choose a different database name."),
    )
}

/// 2812: unknown stored procedure.
pub fn procedure_not_found(name: &str) -> ServerMessage {
    ServerMessage::new(
        2812,
        62,
        16,
        format!("Could not find stored procedure '{name}'."),
    )
}

/// 3701: DROP DATABASE of a database that does not exist.
pub fn cannot_drop_missing(name: &str) -> ServerMessage {
    ServerMessage::new(
        3701,
        1,
        11,
        format!(
            "Cannot drop the database '{name}', because it does not exist or you do not have permission."
        ),
    )
}

/// 3702: DROP DATABASE while sessions use it.
pub fn database_in_use_drop(name: &str) -> ServerMessage {
    ServerMessage::new(
        3702,
        4,
        16,
        format!("Cannot drop database \"{name}\" because it is currently in use."),
    )
}

/// 3708: DROP DATABASE of a system database.
pub fn cannot_drop_system(name: &str) -> ServerMessage {
    ServerMessage::new(
        3708,
        1,
        16,
        format!("Cannot drop the database '{name}' because it is a system database."),
    )
}

/// 3902 / 3903: COMMIT or ROLLBACK without BEGIN TRANSACTION.
pub fn no_transaction(commit: bool) -> ServerMessage {
    if commit {
        ServerMessage::new(
            3902,
            1,
            16,
            "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.",
        )
    } else {
        ServerMessage::new(
            3903,
            1,
            16,
            "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION.",
        )
    }
}

/// 4060: the login's requested database cannot be opened.
pub fn cannot_open_login_database(name: &str) -> ServerMessage {
    ServerMessage::new(
        4060,
        1,
        11,
        format!("Cannot open database \"{name}\" requested by the login. The login failed."),
    )
}

/// 5701: database context changed (INFO).
pub fn changed_database(name: &str) -> ServerMessage {
    ServerMessage::new(5701, 2, 0, format!("Changed database context to '{name}'."))
}

/// 8134: division by zero.
pub fn divide_by_zero() -> ServerMessage {
    ServerMessage::new(8134, 1, 16, "Divide by zero error encountered.")
}

/// 18456: login failed (the state is 8 for a wrong password, as SQL Server logs it; clients see 1).
pub fn login_failed(user: &str) -> ServerMessage {
    ServerMessage::new(18456, 1, 14, format!("Login failed for user '{user}'."))
}

/// 924: the database is in single-user mode and someone else is in it.
pub fn single_user_taken(name: &str) -> ServerMessage {
    ServerMessage::new(
        924,
        1,
        14,
        format!("Database '{name}' is already open and can only have one user at a time."),
    )
}

/// 1416: a mirroring clause on a database that is not mirrored.
pub fn not_mirrored(name: &str) -> ServerMessage {
    ServerMessage::new(
        1416,
        1,
        16,
        format!("Database \"{name}\" is not configured for database mirroring."),
    )
}

/// 1418: `SET PARTNER = 'TCP://…'` to an endpoint that cannot be reached (sims have none).
pub fn partner_unreachable(address: &str) -> ServerMessage {
    ServerMessage::new(
        1418,
        1,
        16,
        format!(
            "The server network address \"{address}\" can not be reached or does not exist. Check the network address name and that the ports for the local and remote endpoints are operational."
        ),
    )
}

/// 5011: ALTER DATABASE on a missing database or one in a state that does not allow it.
pub fn cannot_alter(name: &str) -> ServerMessage {
    ServerMessage::new(
        5011,
        9,
        14,
        format!(
            "User does not have permission to alter database '{name}', the database does not exist, or the database is not in a state that allows access checks."
        ),
    )
}

/// 5060: INFO sent when ROLLBACK IMMEDIATE ends other sessions.
pub fn rolling_back() -> ServerMessage {
    ServerMessage::new(
        5060,
        1,
        10,
        "Nonqualified transactions are being rolled back. Estimated rollback completion: 100%.",
    )
}

/// 5069: follows the error that made ALTER DATABASE fail.
pub fn alter_failed() -> ServerMessage {
    ServerMessage::new(5069, 1, 16, "ALTER DATABASE statement failed.")
}

/// 5070: other users prevent the state change (no ROLLBACK IMMEDIATE).
pub fn database_in_use_alter(name: &str) -> ServerMessage {
    ServerMessage::new(
        5070,
        2,
        16,
        format!(
            "Database state cannot be changed while other users are using the database '{name}'"
        ),
    )
}

/// 6104: KILL of one's own session.
pub fn kill_self() -> ServerMessage {
    ServerMessage::new(6104, 1, 16, "Cannot use KILL to kill your own process.")
}

/// 6106: KILL of a session that does not exist.
pub fn kill_unknown(spid: i64) -> ServerMessage {
    ServerMessage::new(
        6106,
        2,
        16,
        format!("Process ID {spid} is not an active process ID."),
    )
}

/// 6107: KILL of a system session.
pub fn kill_system() -> ServerMessage {
    ServerMessage::new(6107, 1, 14, "Only user processes can be killed.")
}

/// 3013: the last error of a failed BACKUP / RESTORE (`verb` as in [`RestoreKind::verb`]).
///
/// [`RestoreKind::verb`]: crate::sqlsim::sql::ast::RestoreKind::verb
pub fn terminating(verb: &str) -> ServerMessage {
    ServerMessage::new(3013, 1, 16, format!("{verb} is terminating abnormally."))
}

/// 3014 (INFO): BACKUP / RESTORE finished.
pub fn backup_done(verb: &str, pages: u64, seconds: f64) -> ServerMessage {
    let mb = pages as f64 * 8192.0 / 1_048_576.0;
    let rate = if seconds > 0.0 { mb / seconds } else { 0.0 };
    ServerMessage::new(
        3014,
        1,
        0,
        format!(
            "{verb} successfully processed {pages} pages in {seconds:.3} seconds ({rate:.3} MB/sec)."
        ),
    )
}

/// 3211 (INFO): STATS progress.
pub fn percent_processed(p: u32) -> ServerMessage {
    ServerMessage::new(3211, 1, 0, format!("{p} percent processed."))
}

/// 4035 (INFO): pages of one database file, in backup set `position` of the device.
pub fn pages_processed(pages: u64, db: &str, file: &str, position: usize) -> ServerMessage {
    ServerMessage::new(
        4035,
        1,
        0,
        format!("Processed {pages} pages for database '{db}', file '{file}' on file {position}."),
    )
}

/// 3262 (INFO): RESTORE VERIFYONLY of backup set `position` succeeded.
pub fn backup_set_valid(position: usize) -> ServerMessage {
    ServerMessage::new(
        3262,
        1,
        0,
        format!("The backup set on file {position} is valid."),
    )
}

/// 3241: not a backup file, truncated, or a damaged header.
pub fn media_malformed(device: &str) -> ServerMessage {
    ServerMessage::new(
        3241,
        0,
        16,
        format!(
            "The media family on device '{device}' is incorrectly formed. SQL Server cannot process this media family."
        ),
    )
}

/// 3183: the payload does not match its checksum.
pub fn page_error(db: &str) -> ServerMessage {
    ServerMessage::new(
        3183,
        2,
        16,
        format!(
            "RESTORE detected an error on page (1:1120) in database \"{db}\" as read from the backup set."
        ),
    )
}

/// 3101: other sessions use the database being restored.
pub fn exclusive_access() -> ServerMessage {
    ServerMessage::new(
        3101,
        1,
        16,
        "Exclusive access could not be obtained because the database is in use.",
    )
}

/// 3104: the database is a mirroring partner.
pub fn restore_mirrored(db: &str) -> ServerMessage {
    ServerMessage::new(
        3104,
        1,
        16,
        format!(
            "RESTORE cannot operate on database '{db}' because it is configured for database mirroring or has joined an availability group. If you intend to restore the database, use ALTER DATABASE to remove mirroring or to remove the database from its availability group."
        ),
    )
}

/// 3117: RESTORE LOG onto a database that is already recovered.
pub fn nothing_to_rollforward() -> ServerMessage {
    ServerMessage::new(
        3117,
        4,
        16,
        "The log or differential backup cannot be restored because no files are ready to rollforward.",
    )
}

/// 3153: RESTORE … WITH RECOVERY on a database that is already recovered.
pub fn already_recovered() -> ServerMessage {
    ServerMessage::new(3153, 1, 16, "The database is already fully recovered.")
}

/// 3154: the backup is of a different database than the one being replaced.
pub fn other_database(db: &str) -> ServerMessage {
    ServerMessage::new(
        3154,
        4,
        16,
        format!(
            "The backup set holds a backup of a database other than the existing '{db}' database."
        ),
    )
}

/// 3159: restoring over a FULL-recovery database whose log tail was not backed up.
pub fn tail_not_backed_up(db: &str) -> ServerMessage {
    ServerMessage::new(
        3159,
        1,
        16,
        format!(
            "The tail of the log for the database \"{db}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log."
        ),
    )
}

/// 3135: the backup set is of the wrong kind for this RESTORE.
pub fn wrong_backup_kind(device: &str, made_by: &str) -> ServerMessage {
    ServerMessage::new(
        3135,
        2,
        16,
        format!(
            "The backup set in file '{device}' was created by {made_by} and cannot be used for this restore operation."
        ),
    )
}

/// 3234: MOVE names a logical file the backup does not have.
pub fn logical_file_unknown(logical: &str, db: &str) -> ServerMessage {
    ServerMessage::new(
        3234,
        2,
        16,
        format!(
            "Logical file '{logical}' is not part of database '{db}'. Use RESTORE FILELISTONLY to list the logical file names."
        ),
    )
}

/// 4038: FILE = n names a backup set the device does not hold.
pub fn no_such_backup_set(n: i64, device: &str) -> ServerMessage {
    ServerMessage::new(
        4038,
        1,
        16,
        format!("Cannot find file ID {n} on device '{device}'."),
    )
}

/// 4208: BACKUP LOG under the SIMPLE recovery model.
pub fn log_backup_simple() -> ServerMessage {
    ServerMessage::new(
        4208,
        1,
        16,
        "The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE.",
    )
}

/// 4214: BACKUP LOG before any full backup.
pub fn no_database_backup() -> ServerMessage {
    ServerMessage::new(
        4214,
        1,
        16,
        "BACKUP LOG cannot be performed because there is no current database backup.",
    )
}

/// 4305: the log backup starts after the database's restore point (a backup is missing).
pub fn log_too_recent(first: u64, needed: u64) -> ServerMessage {
    ServerMessage::new(
        4305,
        1,
        16,
        format!(
            "The log in this backup set begins at LSN {first}, which is too recent to apply to the database. An earlier log backup that includes LSN {needed} can be restored."
        ),
    )
}

/// 4326: the log backup ends before the database's restore point (already applied).
pub fn log_too_early(last: u64, needed: u64) -> ServerMessage {
    ServerMessage::new(
        4326,
        1,
        16,
        format!(
            "The log in this backup set terminates at LSN {last}, which is too early to apply to the database. A more recent log backup that includes LSN {needed} can be restored."
        ),
    )
}

/// 3906: a change to a read-only (e.g. STANDBY) database.
pub fn read_only(db: &str) -> ServerMessage {
    ServerMessage::new(
        3906,
        1,
        16,
        format!("Failed to update database \"{db}\" because the database is read-only."),
    )
}

/// 3147: BACKUP or RESTORE of tempdb.
pub fn tempdb_backup() -> ServerMessage {
    ServerMessage::new(
        3147,
        3,
        16,
        "Backup and restore operations are not allowed on database tempdb.",
    )
}

/// An error injected by the `fail` fault: SQL Server's text for the numbers sqlsim knows,
/// a generic one otherwise.
pub fn injected(number: i32, device: &str, db: &str) -> ServerMessage {
    match number {
        3201 => ServerMessage::new(
            3201,
            2,
            16,
            format!(
                "Cannot open backup device '{device}'. Operating system error 5(Access is denied.)."
            ),
        ),
        3241 => media_malformed(device),
        3183 => page_error(db),
        3101 => exclusive_access(),
        3159 => tail_not_backed_up(db),
        3104 => restore_mirrored(db),
        n => ServerMessage::new(n, 1, 16, format!("sqlsim fault: error {n} injected.")),
    }
}

/// 3021: BACKUP or RESTORE inside a user transaction.
pub fn backup_in_transaction() -> ServerMessage {
    ServerMessage::new(
        3021,
        1,
        16,
        "Cannot perform a backup or restore operation within a transaction.",
    )
}

/// 3187: `WITH CHECKSUM` on a backup set written without checksums.
pub fn no_backup_checksums() -> ServerMessage {
    ServerMessage::new(
        3187,
        1,
        16,
        "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.",
    )
}

/// 3266: `BACKUP … WITH NOINIT` cannot append to a file whose sets it cannot read to the end.
pub fn media_end_malformed(device: &str) -> ServerMessage {
    ServerMessage::new(
        3266,
        1,
        16,
        format!(
            "The backup data at the end of \"{device}\" is incorrectly formatted. Backup sets on the media might be damaged and unusable. To determine the backup sets on the media, use RESTORE HEADERONLY. To determine the usability of the backup sets, run RESTORE VERIFYONLY. If all of the backup sets are incomplete, reformat the media using BACKUP WITH FORMAT, which destroys all the backup sets."
        ),
    )
}

/// 5133: the folder of a database file to create does not exist (Windows OS error 3).
pub fn directory_lookup_failed(physical: &str) -> ServerMessage {
    ServerMessage::new(
        5133,
        1,
        16,
        format!(
            "Directory lookup for the file \"{physical}\" failed with the operating system error 3(The system cannot find the path specified.)."
        ),
    )
}

/// 1834: a database file to restore would overwrite a file another database uses.
pub fn file_in_use(physical: &str, owner: &str) -> ServerMessage {
    ServerMessage::new(
        1834,
        1,
        16,
        format!(
            "The file '{physical}' cannot be overwritten.  It is being used by database '{owner}'."
        ),
    )
}

/// 3156: follows the cause (5133: state 3, 1834: state 4) for each file that cannot be restored.
pub fn cannot_restore_file(logical: &str, physical: &str, state: u8) -> ServerMessage {
    ServerMessage::new(
        3156,
        state,
        16,
        format!(
            "File '{logical}' cannot be restored to '{physical}'. Use WITH MOVE to identify a valid location for the file."
        ),
    )
}

/// 3119: after the planning errors of a RESTORE, before 3013.
pub fn restore_planning_failed() -> ServerMessage {
    ServerMessage::new(
        3119,
        1,
        16,
        "Problems were identified while planning for the RESTORE statement. Previous messages provide details.",
    )
}

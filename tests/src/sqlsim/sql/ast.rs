//! The statements sqlsim recognises, as the parser produces them. The shapes are deliberately
//! small: only what the supported subset (documented in `sqlsim/mod.rs`) can express.

use crate::sqlsim::types::Value;

/// A possibly qualified name as written, without brackets: `master.sys.databases` has three parts.
/// An empty part stands for an omitted one (`msdb..sysjobs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectName {
    /// Name parts, outermost first.
    pub parts: Vec<String>,
}

impl ObjectName {
    /// The last part (the object itself).
    pub fn object(&self) -> &str {
        self.parts.last().map_or("", String::as_str)
    }

    /// The schema part, if written.
    pub fn schema(&self) -> Option<&str> {
        let n = self.parts.len();
        (n >= 2)
            .then(|| self.parts[n - 2].as_str())
            .filter(|s| !s.is_empty())
    }

    /// The database part, if written.
    pub fn database(&self) -> Option<&str> {
        let n = self.parts.len();
        (n >= 3)
            .then(|| self.parts[n - 3].as_str())
            .filter(|s| !s.is_empty())
    }

    /// The name as SQL Server quotes it in messages (`dbo.Foo`, brackets dropped).
    pub fn display(&self) -> String {
        self.parts.join(".")
    }
}

/// Binary operators, lowest precedence first in the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// OR
    Or,
    /// AND
    And,
    /// =
    Eq,
    /// <> or !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
    /// +
    Add,
    /// -
    Sub,
    /// *
    Mul,
    /// /
    Div,
    /// %
    Mod,
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Literal(Value),
    /// `@name` (parameter).
    Variable(String),
    /// `@@NAME`.
    Global(String),
    /// A column reference, possibly qualified (`d.name`).
    Column(Vec<String>),
    /// A function call; `COUNT(*)` is `CountStar`.
    Function {
        /// Function name as written.
        name: String,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `COUNT(*)`.
    CountStar,
    /// Unary minus.
    Neg(Box<Expr>),
    /// NOT.
    Not(Box<Expr>),
    /// Binary operation.
    Binary {
        /// Operator.
        op: BinOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `x [NOT] IN (…)`.
    InList {
        /// Tested value.
        expr: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
        /// NOT IN.
        negated: bool,
    },
    /// `(SELECT …)` used as a value: the first column of its only row (NULL when no row).
    Subquery(Box<Select>),
    /// `x IS [NOT] NULL`.
    IsNull {
        /// Tested value.
        expr: Box<Expr>,
        /// IS NOT NULL.
        negated: bool,
    },
}

/// One item of a SELECT list.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectItem {
    /// `*` or `alias.*`.
    Wildcard(Option<String>),
    /// An expression with an optional alias.
    Expr {
        /// The expression.
        expr: Expr,
        /// `AS alias`.
        alias: Option<String>,
    },
}

/// A table in FROM or JOIN.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRef {
    /// The table name.
    pub name: ObjectName,
    /// Its alias.
    pub alias: Option<String>,
}

/// `[INNER] JOIN table ON condition`.
#[derive(Clone, Debug, PartialEq)]
pub struct Join {
    /// Joined table.
    pub table: TableRef,
    /// Join condition.
    pub on: Expr,
}

/// A SELECT statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// `SELECT DISTINCT` (duplicate output rows removed).
    pub distinct: bool,
    /// `TOP n`.
    pub top: Option<Expr>,
    /// The select list.
    pub items: Vec<SelectItem>,
    /// FROM table.
    pub from: Option<TableRef>,
    /// INNER JOINs.
    pub joins: Vec<Join>,
    /// WHERE condition.
    pub filter: Option<Expr>,
    /// ORDER BY items (`true` = DESC).
    pub order_by: Vec<(Expr, bool)>,
}

/// An INSERT … VALUES statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Insert {
    /// Target table.
    pub table: ObjectName,
    /// Column list, if given.
    pub columns: Option<Vec<String>>,
    /// VALUES rows.
    pub rows: Vec<Vec<Expr>>,
}

/// One argument of EXEC.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecArg {
    /// `@name =` if given.
    pub name: Option<String>,
    /// The value (`None` for DEFAULT).
    pub value: Option<Expr>,
    /// OUTPUT flag.
    pub output: bool,
}

/// How ALTER DATABASE … SET SINGLE_USER treats other sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// No clause: wait for other users (sqlsim fails instead of blocking).
    Wait,
    /// `WITH ROLLBACK IMMEDIATE` (or `ROLLBACK AFTER n`): end other sessions.
    RollbackImmediate,
    /// `WITH NO_WAIT`: fail at once if others are connected.
    NoWait,
}

/// What ALTER DATABASE … SET changes.
#[derive(Clone, Debug, PartialEq)]
pub enum AlterDatabase {
    /// SINGLE_USER, RESTRICTED_USER or MULTI_USER.
    UserAccess(crate::sqlsim::engine::state::UserAccess, Termination),
    /// ONLINE or OFFLINE.
    State(crate::sqlsim::engine::state::DbState, Termination),
    /// RECOVERY FULL | BULK_LOGGED | SIMPLE.
    Recovery(crate::sqlsim::engine::state::RecoveryModel),
    /// READ_ONLY (true) or READ_WRITE (false).
    ReadOnly(bool, Termination),
    /// PARTNER OFF.
    PartnerOff,
    /// Another PARTNER / WITNESS clause: needs a mirroring session.
    PartnerOther(String),
}

/// A recognised statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `USE db`.
    Use(String),
    /// `SET option …`: accepted, no effect.
    SetOption(String),
    /// SELECT.
    Select(Select),
    /// INSERT.
    Insert(Insert),
    /// `CREATE DATABASE name`.
    CreateDatabase(String),
    /// `DROP DATABASE a [, b]`.
    DropDatabase {
        /// Databases to drop.
        names: Vec<String>,
        /// `IF EXISTS` given.
        if_exists: bool,
    },
    /// `EXEC [@rc =] proc args`, or a bare procedure name at the start of a batch.
    Exec {
        /// `@rc =` target.
        return_var: Option<String>,
        /// Procedure name.
        procedure: ObjectName,
        /// Arguments.
        args: Vec<ExecArg>,
    },
    /// `EXEC (string)`: dynamic SQL.
    ExecString(Expr),
    /// `BEGIN TRAN[SACTION]`.
    BeginTran,
    /// `KILL spid`.
    Kill(Expr),
    /// `ALTER DATABASE name SET …`.
    AlterDatabase {
        /// Database.
        name: String,
        /// The change.
        action: AlterDatabase,
    },
    /// `COMMIT [TRAN|TRANSACTION|WORK]`.
    Commit,
    /// `ROLLBACK [TRAN|TRANSACTION|WORK]`.
    Rollback,
    /// `BACKUP DATABASE | LOG`.
    Backup(Backup),
    /// `RESTORE DATABASE | LOG | VERIFYONLY | HEADERONLY | FILELISTONLY`.
    Restore(Restore),
    /// `DECLARE @a type [= value][, …]`: the type is checked for shape only.
    Declare(Vec<(String, Option<Expr>)>),
    /// `SET @a = value`.
    SetVariable {
        /// Variable name with its `@`.
        name: String,
        /// New value.
        value: Expr,
    },
    /// `IF condition statement-or-block [ELSE statement-or-block]`.
    If {
        /// The condition.
        condition: Expr,
        /// Runs when the condition is TRUE.
        then: Vec<Parsed>,
        /// Runs otherwise (UNKNOWN included).
        otherwise: Vec<Parsed>,
    },
    /// `BEGIN … END`.
    Block(Vec<Parsed>),
}

impl Statement {
    /// The statement kind as fault switches and `sys.dm_exec_requests.command` name it
    /// (lower case: `select`, `insert`, `backup`, `restore`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Statement::Use(_) => "use",
            Statement::SetOption(_) => "set",
            Statement::Select(_) => "select",
            Statement::Insert(_) => "insert",
            Statement::CreateDatabase(_) => "create",
            Statement::DropDatabase { .. } => "drop",
            Statement::Exec { .. } | Statement::ExecString(_) => "exec",
            Statement::BeginTran | Statement::Commit | Statement::Rollback => "transaction",
            Statement::Kill(_) => "kill",
            Statement::AlterDatabase { .. } => "alter",
            Statement::Backup(_) => "backup",
            Statement::Restore(_) => "restore",
            Statement::Declare(_) | Statement::SetVariable { .. } => "set",
            Statement::If { .. } | Statement::Block(_) => "control",
        }
    }
}

/// What BACKUP copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupKind {
    /// `BACKUP DATABASE`: a full backup.
    Database,
    /// `BACKUP LOG`: the log since the previous log backup.
    Log,
}

/// One `WITH` option of BACKUP or RESTORE: a flag (`CHECKSUM`), a valued option (`STATS = 10`,
/// `NAME = N'…'`, `STANDBY = @f`) or `MOVE 'logical' TO 'physical'`.
#[derive(Clone, Debug, PartialEq)]
pub struct WithOption {
    /// Option name, upper case.
    pub name: String,
    /// `= value` (for MOVE: the logical name).
    pub value: Option<Expr>,
    /// MOVE's `TO` target.
    pub to: Option<Expr>,
}

/// `BACKUP DATABASE | LOG db TO DISK = file [, DISK = file…] [WITH …]`; the database and the
/// files may be `@variables`, as sp_executesql callers send them.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    /// DATABASE or LOG.
    pub kind: BackupKind,
    /// Database name: identifier (as a string literal) or variable.
    pub database: Expr,
    /// `DISK = …` targets (sqlsim writes the first; striping is not simulated).
    pub disks: Vec<Expr>,
    /// WITH options.
    pub options: Vec<WithOption>,
}

/// What RESTORE does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreKind {
    /// `RESTORE DATABASE` (with FROM: a full backup; without: recovery only).
    Database,
    /// `RESTORE LOG`.
    Log,
    /// `RESTORE VERIFYONLY`.
    VerifyOnly,
    /// `RESTORE HEADERONLY`.
    HeaderOnly,
    /// `RESTORE FILELISTONLY`.
    FileListOnly,
}

impl RestoreKind {
    /// The words SQL Server uses in 3013 "… is terminating abnormally".
    pub fn verb(self) -> &'static str {
        match self {
            RestoreKind::Database => "RESTORE DATABASE",
            RestoreKind::Log => "RESTORE LOG",
            RestoreKind::VerifyOnly => "VERIFY DATABASE",
            RestoreKind::HeaderOnly => "RESTORE HEADERONLY",
            RestoreKind::FileListOnly => "RESTORE FILELIST",
        }
    }
}

/// `RESTORE … [db] [FROM DISK = file] [WITH …]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Restore {
    /// What to do.
    pub kind: RestoreKind,
    /// Target database (DATABASE and LOG only).
    pub database: Option<Expr>,
    /// `DISK = …` sources.
    pub disks: Vec<Expr>,
    /// WITH options.
    pub options: Vec<WithOption>,
}

/// A statement with the byte span of its text in the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The statement.
    pub stmt: Statement,
    /// Byte offset of its first token.
    pub start: usize,
    /// Byte offset past its last token.
    pub end: usize,
}

//! The one module that writes T-SQL. Every statement the agent sends is built here, from typed
//! values only: database names are [`DatabaseName`]s (already restricted to SQL Server regular
//! identifiers) and are additionally bracket-quoted; string values are parameters wherever T-SQL
//! allows them (`sp_executesql` with `@P1`, `@P2`, …) and `N'…'` literals with doubled quotes only
//! where it does not. Only what T-SQL cannot parameterise (`ALTER DATABASE` names, `KILL`) is put in
//! the text, and only through [`quote_ident`] or as a validated integer.
//!
//! Statements are values ([`Statement`]) so a dry run can print exactly what a run would send.

use std::fmt;

use failback_proto::model::DatabaseName;

/// A parameter value of a [`Statement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// NVARCHAR.
    Text(String),
    /// INT.
    Int(i32),
}

/// One statement: text with `@P1…` placeholders and their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// T-SQL text.
    pub text: String,
    /// Values of `@P1`, `@P2`, … in order.
    pub params: Vec<Param>,
}

impl Statement {
    fn plain(text: impl Into<String>) -> Self {
        Statement {
            text: text.into(),
            params: Vec::new(),
        }
    }
}

impl fmt::Display for Statement {
    /// The statement as an operator reads it in a plan: the text, then the parameter values as
    /// T-SQL literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        for (i, p) in self.params.iter().enumerate() {
            let v = match p {
                Param::Text(s) => nstring(s),
                Param::Int(n) => n.to_string(),
            };
            write!(
                f,
                "{}@P{} = {v}",
                if i == 0 { "  -- " } else { ", " },
                i + 1
            )?;
        }
        Ok(())
    }
}

/// `[name]`, with `]` doubled (a [`DatabaseName`] cannot contain one, but the quoting does not
/// rely on that).
pub fn quote_ident(name: &DatabaseName) -> String {
    format!("[{}]", name.as_str().replace(']', "]]"))
}

/// `N'text'`, with `'` doubled.
pub fn nstring(s: &str) -> String {
    format!("N'{}'", s.replace('\'', "''"))
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("@P{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(dbs: &[DatabaseName]) -> Vec<Param> {
    dbs.iter()
        .map(|d| Param::Text(d.as_str().to_string()))
        .collect()
}

/// Server identity and default paths. SERVERPROPERTY returns sql_variant; tiberius decodes its
/// base type (nvarchar for these properties), so no CAST is needed.
pub fn instance_properties() -> Statement {
    Statement::plain(
        "SELECT SERVERPROPERTY(N'ServerName') AS server_name, SERVERPROPERTY(N'ProductVersion') AS product_version, \
SERVERPROPERTY(N'Edition') AS edition, @@VERSION AS version_text, \
SERVERPROPERTY(N'InstanceDefaultDataPath') AS data_path, SERVERPROPERTY(N'InstanceDefaultLogPath') AS log_path;",
    )
}

/// Fallback for SQL Server 2008 R2 (InstanceDefault*Path is NULL there): the folders of master's
/// files. Decision: we do not read the registry (`xp_instance_regread`): it is undocumented, needs
/// sysadmin, and master's folder is where SSMS itself puts restored files on such instances.
pub fn master_files() -> Statement {
    Statement::plain("SELECT type, physical_name FROM sys.master_files WHERE database_id = 1;")
}

/// The SQL Server and SQL Server Agent services (SQL 2008 R2 SP1 and later).
pub fn services() -> Statement {
    Statement::plain(
        "SELECT servicename, startup_type_desc, status_desc, service_account FROM sys.dm_server_services;",
    )
}

/// `sys.databases` rows for the names (pchat-dr.md §6.6).
pub fn database_state(dbs: &[DatabaseName]) -> Statement {
    Statement {
        text: format!(
            "SELECT name, state_desc, user_access_desc, recovery_model_desc, is_in_standby, is_read_only FROM sys.databases WHERE name IN ({});",
            placeholders(dbs.len())
        ),
        params: names(dbs),
    }
}

/// Mirroring rows for the names (pchat-dr.md §6.1).
pub fn mirroring_state(dbs: &[DatabaseName]) -> Statement {
    Statement {
        text: format!(
            "SELECT d.name, m.mirroring_guid, m.mirroring_role_desc, m.mirroring_state_desc, m.mirroring_partner_name, \
m.mirroring_partner_instance, m.mirroring_witness_name, m.mirroring_safety_level_desc \
FROM sys.database_mirroring AS m JOIN sys.databases AS d ON d.database_id = m.database_id WHERE d.name IN ({});",
            placeholders(dbs.len())
        ),
        params: names(dbs),
    }
}

/// Sessions in a database other than our own (pchat-dr.md §6.10; works from 2008 R2).
pub fn sessions(db: &DatabaseName) -> Statement {
    Statement {
        text: "SELECT spid, loginame, hostname, program_name FROM sys.sysprocesses WHERE dbid = DB_ID(@P1) AND spid <> @@SPID;".into(),
        params: vec![Param::Text(db.as_str().to_string())],
    }
}

/// `KILL n;` — KILL takes only a literal. `spid` must be a user session id (> 50 is the SQL Server
/// convention for user sessions, but sqlsim numbers from 51 too; we require > 0 and let the server
/// refuse system sessions with 6107).
pub fn kill(spid: i32) -> Option<Statement> {
    (spid > 0).then(|| Statement::plain(format!("KILL {spid};")))
}

/// `ALTER DATABASE [db] SET PARTNER OFF;` (pchat-dr.md §6.1; names cannot be parameters here).
pub fn set_partner_off(db: &DatabaseName) -> Statement {
    Statement::plain(format!(
        "ALTER DATABASE {} SET PARTNER OFF;",
        quote_ident(db)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let db = DatabaseName::new("mgc").unwrap();
        assert_eq!(quote_ident(&db), "[mgc]");
        assert_eq!(nstring("it's"), "N'it''s'");
        assert_eq!(
            nstring("x'; DROP DATABASE y --"),
            "N'x''; DROP DATABASE y --'"
        );
        assert_eq!(
            set_partner_off(&db).text,
            "ALTER DATABASE [mgc] SET PARTNER OFF;"
        );
        assert_eq!(kill(0), None);
        assert_eq!(kill(53).unwrap().text, "KILL 53;");
    }

    #[test]
    fn values_are_parameters() {
        let dbs = [
            DatabaseName::new("mgc").unwrap(),
            DatabaseName::new("mgccomp").unwrap(),
        ];
        let s = database_state(&dbs);
        assert!(s.text.ends_with("WHERE name IN (@P1, @P2);"));
        assert_eq!(
            s.params,
            vec![Param::Text("mgc".into()), Param::Text("mgccomp".into())]
        );
        assert!(s.to_string().ends_with("-- @P1 = N'mgc', @P2 = N'mgccomp'"));
    }
}

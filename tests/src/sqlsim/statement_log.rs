//! The statement log: every statement sqlsim receives is appended to `<data-dir>/statements.jsonl`
//! as one JSON object per line (`time`, `spid`, `database`, `kind`, `text`, and for parameterized
//! statements `params`: the `@P1…` values as text), so tests and the lab can
//! assert exactly what the agent sent and how often. Statements are logged before they run, so a
//! statement that fails (or crashes the process) is still recorded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::clock::Timestamp;
use super::error::{Result, SimError};

/// File name of the statement log inside the data directory.
pub const STATEMENT_LOG_FILE: &str = "statements.jsonl";

/// One line of the log.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    spid: u16,
    database: &'a str,
    /// `batch` (SQL batch), `rpc` (sp_executesql text) or `dynamic` (EXEC of a string).
    kind: &'a str,
    text: &'a str,
    /// The statement's `@Pn` parameters (database names, file paths: what the scenarios'
    /// invariant checkers need to say which database a RESTORE replaced, from which file).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    params: std::collections::BTreeMap<String, String>,
}

/// Appends statements to the log file.
pub struct StatementLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl StatementLog {
    /// Opens (or creates) the log in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join(STATEMENT_LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| SimError::State {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(StatementLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends one statement. A failure to write is logged, not returned: the statement still runs.
    pub fn record(&self, spid: u16, database: &str, kind: &str, text: &str) {
        self.record_with(
            spid,
            database,
            kind,
            text,
            &super::engine::eval::Params::new(),
        );
    }

    /// Appends one statement with the `@Pn` values among `vars`.
    pub fn record_with(
        &self,
        spid: u16,
        database: &str,
        kind: &str,
        text: &str,
        vars: &super::engine::eval::Params,
    ) {
        let params = vars
            .iter()
            .filter(|(k, _)| {
                let k = k.trim_start_matches('@');
                k.len() > 1
                    && k[..1].eq_ignore_ascii_case("p")
                    && k[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .filter_map(|(k, v)| Some((k.to_ascii_uppercase(), v.to_text()?)))
            .collect();
        let line = Line {
            time: Timestamp::now().to_rfc3339(),
            spid,
            database,
            kind,
            text,
            params,
        };
        let Ok(mut json) = serde_json::to_vec(&line) else {
            return;
        };
        json.push(b'\n');
        let result = match self.file.lock() {
            Ok(mut f) => f.write_all(&json),
            Err(_) => Err(std::io::Error::other("statement log lock poisoned")),
        };
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "failed to append to the statement log: {e}");
        }
    }
}

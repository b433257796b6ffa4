//! The statement log: every statement sqlsim receives is appended to `<data-dir>/statements.jsonl`
//! as one JSON object per line (`time`, `spid`, `database`, `kind`, `text`), so tests and the lab can
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
        let line = Line {
            time: Timestamp::now().to_rfc3339(),
            spid,
            database,
            kind,
            text,
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

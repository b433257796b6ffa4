//! Runs one script through the configured command line and turns what happened into a result:
//! stdout on exit 0; otherwise a typed error carrying the cleaned, truncated stderr and a
//! retryability class.
//!
//! The script is the ONE last argument of a `tokio::process::Command` (no shell in between, so
//! nothing in it is re-split or re-interpreted before PowerShell's own parser). On Windows the
//! standard library quotes that argument with the MSVC rules (`"` becomes `\"`), which
//! powershell.exe undoes when it rebuilds its argument vector, so the text arrives intact.
//!
//! The child is killed when the timeout expires and also when the future is dropped (the operation
//! was cancelled), so no orphaned shell keeps changing the pool behind a new attempt.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::error::{Error, STDERR_LIMIT, ShellFailure, truncate};

/// Most stdout kept (the JSON answers are a few kilobytes; anything beyond is an error).
const STDOUT_CAP: usize = 4 << 20;
/// Most stderr kept before cleaning and truncation.
const STDERR_CAP: usize = 256 << 10;
/// How long to wait for the pipes to close after killing a timed-out shell.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);

/// The configured command line and timeout.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Program and its arguments; the script is appended.
    pub command: Vec<String>,
    /// Longest a script may run.
    pub timeout: Duration,
}

impl Runner {
    /// Runs `script`; returns stdout (lossily decoded) when the shell exits 0.
    pub async fn run(&self, script: &str) -> Result<String, Error> {
        let (program, args) = self.command.split_first().ok_or_else(|| Error::Config {
            path: "[lync]".into(),
            message: "command is empty".into(),
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(windows)]
        cmd.creation_flags(0x0800_0000); // CREATE_NO_WINDOW: the agent runs as a service.
        let started = tokio::time::Instant::now();
        let mut child = cmd.spawn().map_err(|source| Error::ShellSpawn {
            program: program.clone(),
            source,
        })?;
        let stdout = child
            .stdout
            .take()
            .map(|r| tokio::spawn(read_capped(r, STDOUT_CAP)));
        let stderr = child
            .stderr
            .take()
            .map(|r| tokio::spawn(read_capped(r, STDERR_CAP)));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => {
                status.map_err(|e| Error::io(format!("wait for the Lync shell '{program}'"), e))?
            }
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let stderr = match stderr {
                    Some(t) => tokio::time::timeout(DRAIN_AFTER_KILL, t)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|(b, _)| b)
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                tracing::warn!(timeout = ?self.timeout, "Lync shell timed out and was killed");
                return Err(Error::ShellTimeout {
                    after: self.timeout,
                    stderr: truncate(
                        &clean_stderr(&String::from_utf8_lossy(&stderr)),
                        STDERR_LIMIT,
                    ),
                });
            }
        };
        let (out, out_overflow) = join(stdout).await;
        let (err, _) = join(stderr).await;
        let out = String::from_utf8_lossy(&out).into_owned();
        let err = clean_stderr(&String::from_utf8_lossy(&err));
        tracing::debug!(elapsed = ?started.elapsed(), exit = ?status.code(), "Lync shell finished");
        if !status.success() {
            let exit = status
                .code()
                .map_or_else(|| "signal".to_string(), |c| c.to_string());
            return Err(Error::ShellFailed {
                failure: classify(&err),
                exit,
                stderr: truncate(&err, STDERR_LIMIT),
            });
        }
        if !err.trim().is_empty() {
            tracing::warn!(stderr = %truncate(&err, STDERR_LIMIT), "Lync shell succeeded but wrote to stderr");
        }
        if out_overflow {
            return Err(Error::ShellOutput {
                reason: format!("more than {STDOUT_CAP} bytes on stdout"),
                stdout: truncate(&out, STDERR_LIMIT),
            });
        }
        Ok(out)
    }
}

/// Reads `r` to the end, keeping at most `cap` bytes (the rest is drained so the child never blocks
/// on a full pipe); the flag says whether anything was dropped.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut overflow = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                overflow |= n > room;
            }
        }
    }
    (kept, overflow)
}

async fn join(task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    match task {
        Some(t) => t.await.unwrap_or_default(),
        None => (Vec::new(), false),
    }
}

/// The human text of stderr. powershell.exe with redirected streams sometimes writes its error and
/// progress records as CLIXML (`#< CLIXML` then `<Objs>`); from that, only the error strings
/// (`<S S="Error">`) are kept, with `_x000D__x000A_` and XML entities decoded.
pub fn clean_stderr(raw: &str) -> String {
    let Some(xml) = raw.trim_start().strip_prefix("#< CLIXML") else {
        return raw.to_string();
    };
    let mut out = String::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<S S=\"Error\">") {
        rest = &rest[start + "<S S=\"Error\">".len()..];
        let end = rest.find("</S>").unwrap_or(rest.len());
        out.push_str(&decode_clixml(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

fn decode_clixml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("_x") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let code = tail
            .get(..5)
            .filter(|c| c.ends_with('_'))
            .and_then(|c| u32::from_str_radix(&c[..4], 16).ok())
            .and_then(char::from_u32);
        match code {
            Some(c) => {
                out.push(c);
                rest = &tail[5..];
            }
            None => {
                out.push_str("_x");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Classifies a failure from the error record's `CategoryInfo : <Category>: ...` line (Windows
/// PowerShell's normal error view prints it for every error).
pub fn classify(stderr: &str) -> ShellFailure {
    if stderr.contains("CommandNotFoundException")
        || stderr.contains("is not recognized as the name of a cmdlet")
        || stderr.contains("Modules_ModuleNotFound")
    {
        // Unknown cmdlet or module (reported as ResourceUnavailable, but it will not appear by
        // itself): the module path or the product is wrong, or the admin tools are missing.
        return ShellFailure::InvalidArgument;
    }
    let category = stderr.lines().find_map(|line| {
        let rest = line.trim_start().trim_start_matches('+').trim_start();
        let rest = rest.strip_prefix("CategoryInfo")?;
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(
            rest.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>(),
        )
    });
    match category.as_deref() {
        Some("ObjectNotFound") => ShellFailure::UnknownIdentity,
        Some(
            "InvalidArgument"
            | "InvalidData"
            | "InvalidType"
            | "InvalidOperation"
            | "ParserError"
            | "SyntaxError"
            | "MetadataError"
            | "PermissionDenied"
            | "SecurityError"
            | "AuthenticationError"
            | "NotImplemented"
            | "NotInstalled"
            | "NotEnabled",
        ) => ShellFailure::InvalidArgument,
        Some(
            "ConnectionError"
            | "ResourceUnavailable"
            | "ResourceBusy"
            | "OperationTimeout"
            | "DeadlockDetected",
        ) => ShellFailure::Unavailable,
        _ => ShellFailure::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_from_category_info() {
        let rec = |cat: &str, id: &str| {
            format!(
                "Set-CsX : boom\nAt line:4 char:1\n+ Set-CsX\n+ ~~~~\n    + CategoryInfo          : {cat}: (:) [Set-CsX], {id}\n    + FullyQualifiedErrorId : X\n"
            )
        };
        assert_eq!(
            classify(&rec("ObjectNotFound", "ItemNotFoundException")),
            ShellFailure::UnknownIdentity
        );
        assert_eq!(
            classify(&rec("ObjectNotFound", "CommandNotFoundException")),
            ShellFailure::InvalidArgument
        );
        assert_eq!(
            classify(&rec("InvalidArgument", "ParameterBindingException")),
            ShellFailure::InvalidArgument
        );
        assert_eq!(
            classify(&rec("ConnectionError", "SqlException")),
            ShellFailure::Unavailable
        );
        assert_eq!(
            classify(&rec("NotSpecified", "Exception")),
            ShellFailure::Failed
        );
        assert_eq!(classify("something odd"), ShellFailure::Failed);
        assert_eq!(
            classify(&rec(
                "ResourceUnavailable",
                "FileNotFoundException\n+ FullyQualifiedErrorId : Modules_ModuleNotFound"
            )),
            ShellFailure::InvalidArgument
        );
    }

    #[test]
    fn clixml_is_reduced_to_error_text() {
        let raw = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\"><Obj S=\"progress\" RefId=\"0\"><TN RefId=\"0\"></TN></Obj>\
                   <S S=\"Error\">Get-CsPool : Cannot find &quot;x&quot;_x000D__x000A_</S>\
                   <S S=\"Error\">    + CategoryInfo          : ObjectNotFound: (:) [], X_x000D__x000A_</S></Objs>";
        let clean = clean_stderr(raw);
        assert_eq!(
            clean,
            "Get-CsPool : Cannot find \"x\"\r\n    + CategoryInfo          : ObjectNotFound: (:) [], X\r\n"
        );
        assert_eq!(classify(&clean), ShellFailure::UnknownIdentity);
        assert_eq!(clean_stderr("plain _x000D_"), "plain _x000D_");
    }
}

//! What a job step does when the Agent runs it, executed as the Agent service account.
//!
//! - `TSQL`: the command runs as a batch in a session of its own (login = the Agent account,
//!   database = the step's database_name); messages are folded into the history message the way
//!   the Agent writes them (`… [SQLSTATE 01000] (Message 3014)`), and any error fails the step.
//! - `CmdExec`: a small command interpreter. Accepted command lines, optionally prefixed with
//!   `cmd /c` (or `cmd.exe /c`) and chained with `&&` (the first failure stops the chain):
//!   - `sqllogship.exe -backup|-copy|-restore <id> -server <this server> […]` (any path
//!     before the program name, quoted or not; flags in any order and case; `-verboselevel`,
//!     `-logintimeout`, `-querytimeout` accepted and ignored);
//!   - `dir [/b] "folder"`: lists a folder (needs read);
//!   - `type "file"`: prints a file (needs read);
//!   - `echo text > "file"` / `echo text >> "file"`: writes / appends a line (needs write; the
//!     `>` must stand apart from the text and the file name);
//!   - `del [/q] [/f] "file"`: deletes a file (needs write);
//!   - `copy [/y] "source" "target"`: copies a file (read on the source, write on the target).
//!
//!   Anything else answers `'x' is not recognized as an internal or external command, …` with
//!   exit code 1. Every path goes through the instance's path mapping and the Agent account's
//!   access table (`access.rs`), so a denied folder gives `Access is denied.` and exit code 1.
//! - Other subsystems fail the step.

use super::access::{self, Access};
use super::{Job, JobStep};
use crate::sqlsim::engine::{Engine, ResultItem, lock};

/// The outcome of one step.
pub struct StepResult {
    /// Succeeded.
    pub ok: bool,
    /// The history row's message.
    pub message: String,
    /// `sql_message_id` (the last error's number for T-SQL steps).
    pub sql_message_id: i32,
    /// `sql_severity`.
    pub sql_severity: i32,
}

/// Splits a command line into words, honouring double quotes.
pub fn split_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The program name of a word, without folder and `.exe`, lower case.
fn program(word: &str) -> String {
    let base = word
        .rsplit(['\\', '/'])
        .next()
        .unwrap_or(word)
        .to_lowercase();
    base.strip_suffix(".exe")
        .map_or(base.clone(), str::to_string)
}

impl Engine {
    /// Runs one step as the Agent account.
    pub(super) async fn run_step(&self, job: &Job, step: &JobStep) -> StepResult {
        let account = lock(&self.state).agent_account();
        if step.subsystem.eq_ignore_ascii_case("TSQL") {
            return self.tsql_step(job, step, &account).await;
        }
        if !step.subsystem.eq_ignore_ascii_case("CmdExec") {
            return StepResult {
                ok: false,
                message: format!(
                    "Unable to start execution of step {} (reason: The {} subsystem is not available in sqlsim).  The step failed.",
                    step.step_id, step.subsystem
                ),
                sql_message_id: 0,
                sql_severity: 0,
            };
        }
        let (code, output) = self.cmdexec(&step.command).await;
        let verdict = if code == 0 {
            "The step succeeded."
        } else {
            "The step failed."
        };
        StepResult {
            ok: code == 0,
            message: format!(
                "Executed as user: {account}. {}  Process Exit Code {code}.  {verdict}",
                output.trim_end()
            ),
            sql_message_id: 0,
            sql_severity: 0,
        }
    }

    async fn tsql_step(&self, job: &Job, step: &JobStep, account: &str) -> StepResult {
        let program = format!(
            "SQLAgent - TSQL JobStep (Job 0x{} : Step {})",
            job.job_id.replace('-', ""),
            step.step_id
        );
        let host = lock(&self.state).machine_name();
        let opened = self
            .open_session(account, false, &host, &program, &step.database_name)
            .or_else(|_| self.open_session(account, false, &host, &program, "master"));
        let (mut session, _kill) = match opened {
            Ok(s) => s,
            Err(m) => {
                return StepResult {
                    ok: false,
                    message: format!(
                        "Executed as user: {account}. {}  The step failed.",
                        m.message
                    ),
                    sql_message_id: m.number,
                    sql_severity: m.class as i32,
                };
            }
        };
        let results = self
            .execute_batch(&mut session, &step.command, &Default::default(), "agent")
            .await;
        self.close_session(session.spid);
        let mut text = Vec::new();
        let mut failed: Option<(i32, i32)> = None;
        for m in results
            .iter()
            .flat_map(|r| &r.items)
            .filter_map(|i| match i {
                ResultItem::Message(m) => Some(m),
                _ => None,
            })
        {
            if m.is_error() {
                text.push(format!(
                    "{} [SQLSTATE 42000] (Error {})",
                    m.message, m.number
                ));
                failed.get_or_insert((m.number, m.class as i32));
            } else {
                text.push(format!(
                    "{} [SQLSTATE 01000] (Message {})",
                    m.message, m.number
                ));
            }
        }
        let body = if text.is_empty() {
            String::new()
        } else {
            format!("{}  ", text.join("  "))
        };
        match failed {
            None => StepResult {
                ok: true,
                message: format!("Executed as user: {account}. {body}The step succeeded."),
                sql_message_id: 0,
                sql_severity: 0,
            },
            Some((n, sev)) => StepResult {
                ok: false,
                message: format!("Executed as user: {account}. {body}The step failed."),
                sql_message_id: n,
                sql_severity: sev,
            },
        }
    }

    /// Runs a CmdExec command line; (exit code, output).
    pub(super) async fn cmdexec(&self, line: &str) -> (i32, String) {
        let mut words = split_words(line);
        if words.first().is_some_and(|w| program(w) == "cmd")
            && words.get(1).is_some_and(|w| w.eq_ignore_ascii_case("/c"))
        {
            words.drain(..2);
        }
        let mut output = String::new();
        for cmd in words.split(|w| w == "&&") {
            let (code, out) = match cmd.first().map(|w| program(w)).as_deref() {
                Some("sqllogship") => self.sqllogship(&cmd[1..]).await,
                Some(_) => self.shell_command(cmd),
                None => (0, String::new()),
            };
            output.push_str(&out);
            if code != 0 {
                return (code, output);
            }
        }
        (0, output)
    }

    /// dir / type / echo / del / copy, as the Agent account.
    fn shell_command(&self, cmd: &[String]) -> (i32, String) {
        let (rules, paths) = {
            let st = lock(&self.state);
            (st.msdb.agent_access.clone(), self.options.paths.clone())
        };
        let check = |p: &str, want| access::check(&rules, &paths, p, want);
        let args: Vec<&str> = cmd[1..]
            .iter()
            .map(String::as_str)
            .filter(|a| !(a.starts_with('/') && a.len() == 2))
            .collect();
        let fail = |msg: &str| (1, format!("{msg}\n"));
        match program(&cmd[0]).as_str() {
            "dir" => {
                let Some(p) = args.first() else {
                    return fail("The syntax of the command is incorrect.");
                };
                let local = match check(p, Access::Read) {
                    Ok(l) => l,
                    Err(_) => return fail("Access is denied."),
                };
                match std::fs::read_dir(&local) {
                    Ok(entries) => {
                        let mut names: Vec<String> = entries
                            .filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        let mut out = format!(" Directory of {p}\n");
                        for n in &names {
                            out.push_str(n);
                            out.push('\n');
                        }
                        out.push_str(&format!("{} File(s)\n", names.len()));
                        (0, out)
                    }
                    Err(_) if local.is_file() => (0, format!("{p}\n")),
                    Err(_) => fail("The system cannot find the path specified."),
                }
            }
            "type" => {
                let Some(p) = args.first() else {
                    return fail("The syntax of the command is incorrect.");
                };
                match check(p, Access::Read) {
                    Err(_) => fail("Access is denied."),
                    Ok(l) => match std::fs::read_to_string(&l) {
                        Ok(t) => (0, t),
                        Err(_) => fail("The system cannot find the file specified."),
                    },
                }
            }
            "echo" => {
                let Some(pos) = args.iter().position(|a| *a == ">" || *a == ">>") else {
                    return (0, format!("{}\n", args.join(" ")));
                };
                let Some(target) = args.get(pos + 1) else {
                    return fail("The syntax of the command is incorrect.");
                };
                let local = match check(target, Access::Write) {
                    Ok(l) => l,
                    Err(_) => return fail("Access is denied."),
                };
                let line = format!("{}\r\n", args[..pos].join(" "));
                let written = if args[pos] == ">>" {
                    use std::io::Write;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&local)
                        .and_then(|mut f| f.write_all(line.as_bytes()))
                } else {
                    std::fs::write(&local, line)
                };
                match written {
                    Ok(()) => (0, String::new()),
                    Err(_) => fail("The system cannot find the path specified."),
                }
            }
            "del" | "erase" => {
                let Some(p) = args.first() else {
                    return fail("The syntax of the command is incorrect.");
                };
                match check(p, Access::Write) {
                    Err(_) => fail("Access is denied."),
                    Ok(l) => match std::fs::remove_file(&l) {
                        Ok(()) => (0, String::new()),
                        Err(_) => (0, format!("Could Not Find {p}\n")),
                    },
                }
            }
            "copy" => {
                let (Some(src), Some(dst)) = (args.first(), args.get(1)) else {
                    return fail("The syntax of the command is incorrect.");
                };
                let (s, d) = match (check(src, Access::Read), check(dst, Access::Write)) {
                    (Ok(s), Ok(d)) => (s, d),
                    _ => return fail("Access is denied."),
                };
                let d = if d.is_dir() {
                    d.join(s.file_name().unwrap_or_default())
                } else {
                    d
                };
                match std::fs::copy(&s, &d) {
                    Ok(_) => (0, "        1 file(s) copied.\n".into()),
                    Err(_) => fail("The system cannot find the file specified."),
                }
            }
            _ => fail(&format!(
                "'{}' is not recognized as an internal or external command,\noperable program or batch file.",
                cmd[0]
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_programs() {
        let w = split_words(
            r#""C:\Program Files\x\sqllogship.exe" -Copy 1-2 -server A\B && dir "E:\a b""#,
        );
        assert_eq!(w[0], r"C:\Program Files\x\sqllogship.exe");
        assert_eq!(program(&w[0]), "sqllogship");
        assert_eq!(w.len(), 8);
        assert_eq!(w[7], r"E:\a b");
    }
}

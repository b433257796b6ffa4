//! `[sql]` in agent.toml: how the agent reaches its local SQL Server instance.
//!
//! Encryption is `required` by default (the production setting) with the server certificate
//! checked against `ca_file` or the system roots; `trust_server_certificate = true` skips the check
//! and must be chosen explicitly. The password is never in the file: it comes from `password_file`
//! (first line) or the environment variable `password_env`, is kept in a [`Secret`] whose `Debug`
//! is redacted, and never appears in logs, errors or results.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Host of the instance (usually the local host).
    pub host: String,
    /// TCP port. Named instances listen on their own port; configure it (SQL Browser is not used).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `sql` (a SQL login) or `integrated` (Windows authentication; Windows hosts only).
    #[serde(default)]
    pub auth: SqlAuth,
    /// SQL login name (auth = sql).
    #[serde(default)]
    pub user: Option<String>,
    /// File whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `required` (default), `off` (TLS for the login only) or `not_supported` (no TLS).
    #[serde(default)]
    pub encryption: SqlEncryption,
    /// CA certificate (PEM) that signed the instance's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Off by default; say it out loud in the config if you must.
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// Connect and login timeout.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_port() -> u16 {
    1433
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(15)
}

/// Authentication mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlAuth {
    /// SQL Server login.
    #[default]
    Sql,
    /// Windows integrated authentication.
    Integrated,
}

/// TDS encryption level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlEncryption {
    /// Full TLS (production default).
    #[default]
    Required,
    /// TLS for the login packet only.
    Off,
    /// No TLS at all (labs only).
    NotSupported,
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    /// The value, for the one place that needs it (the login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl SqlConfig {
    /// Checks the combination; errors name the `sql.` field.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty()
            || self
                .host
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "sql.host: '{}' is not a host name",
                self.host.escape_default()
            ));
        }
        if self.port == 0 {
            return Err("sql.port: must be 1 to 65535".into());
        }
        match self.auth {
            SqlAuth::Sql => {
                if self.user.as_deref().is_none_or(str::is_empty) {
                    return Err("sql.user: required with auth = \"sql\"".into());
                }
                if self.password_file.is_some() == self.password_env.is_some() {
                    return Err("sql: give exactly one of password_file and password_env (the password is never written in agent.toml)".into());
                }
            }
            SqlAuth::Integrated => {
                if !cfg!(windows) {
                    return Err("sql.auth: \"integrated\" works on Windows hosts only; use a SQL login here".into());
                }
            }
        }
        if self.trust_server_certificate && self.ca_file.is_some() {
            return Err("sql: ca_file and trust_server_certificate exclude each other".into());
        }
        Ok(())
    }

    /// Reads the password (auth = sql).
    pub fn password(&self) -> Result<Secret, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("sql.password_file '{}': {e}", path.display()))?;
            let first = text.lines().next().unwrap_or_default().to_string();
            if first.is_empty() {
                return Err(format!(
                    "sql.password_file '{}': the first line is empty",
                    path.display()
                ));
            }
            return Ok(Secret::new(first));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var)
                .map(Secret::new)
                .map_err(|_| format!("sql.password_env: environment variable '{var}' is not set"));
        }
        Err("sql: no password source configured".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SqlConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn validation_and_secret() {
        let c = parse("host = \"127.0.0.1\"\nport = 14330\nuser = \"sa\"\npassword_env = \"X\"\n");
        assert_eq!(c.encryption, SqlEncryption::Required);
        assert!(c.validate().is_ok());
        let c2 = parse("host = \"h\"\nuser = \"sa\"\n");
        assert!(c2.validate().unwrap_err().contains("password"));
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(***)"
        );
        assert!(
            toml::from_str::<SqlConfig>("host = \"h\"\npassword = \"x\"\n").is_err(),
            "no inline passwords"
        );
    }
}

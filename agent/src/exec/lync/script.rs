//! The scripts the Lync backend sends, built as text from constants and [`ps_literal`] values only.
//!
//! Every script is:
//! 1. `$ErrorActionPreference='Stop'` — first, so that even a failing `Import-Module` (a
//!    non-terminating error by default) ends the script with a non-zero exit;
//! 2. `$ProgressPreference='SilentlyContinue'` — importing the Lync module draws a progress bar,
//!    which powershell.exe with redirected output serialises as CLIXML onto stderr;
//! 3. the module import (pchat-dr.md §5.1);
//! 4. the cmdlet(s), one per line;
//! 5. one `ConvertTo-Json -Compress -Depth 4 -InputObject @(...)` as the last line. `-InputObject
//!    @(...)` (not a pipe into ConvertTo-Json, which unrolls arrays) makes zero, one and many objects
//!    all come out as a JSON array. Every property is projected through `Select-Object` with a
//!    `[string]` / `[string[]]` cast: the cmdlets return rich objects (an XdsIdentity, an enum that
//!    ConvertTo-Json would write as a number, Computer objects), whose string forms are what the
//!    cmdlets accept back. PowerShell unrolls what a script block outputs, so a calculated
//!    `[string[]]` property with one element arrives as a bare string and an empty one as `null`;
//!    the parser in `super` accepts both shapes.

use super::{ActiveServersChange, PoolState};
use crate::error::Error;
use crate::exec::lync::literal::ps_literal;

/// Property of a `Get-CsService -PersistentChatServer` object that carries the pool's active-server
/// list. VERIFY on a live system (pchat-dr.md §5.2, §9.2): no source names it; lyncsim exposes it
/// under this name. Only the read side depends on it: `Set-CsPersistentChatActiveServer` does not.
pub const ACTIVE_SERVERS_PROPERTY: &str = "ActiveServers";

/// The depth ConvertTo-Json serialises to (the default, 2, would flatten nothing we read, but an
/// explicit value makes the output shape independent of the PowerShell version's default).
const JSON: &str = "ConvertTo-Json -Compress -Depth 4 -InputObject";

/// How a projected property is cast.
#[derive(Clone, Copy)]
enum Cast {
    Str,
    StrArray,
}

/// `Select-Object` with calculated properties `(output name, source property, cast)`.
fn select(props: &[(&str, &str, Cast)]) -> String {
    let parts: Vec<String> = props
        .iter()
        .map(|(name, source, cast)| {
            let cast = match cast {
                Cast::Str => "[string]",
                Cast::StrArray => "[string[]]",
            };
            format!("@{{n='{name}';e={{{cast}$_.{source}}}}}")
        })
        .collect();
    format!("Select-Object -Property {}", parts.join(","))
}

fn state_projection() -> String {
    select(&[
        ("Identity", "Identity", Cast::Str),
        ("PoolState", "PoolState", Cast::Str),
    ])
}

/// Builds the scripts for one configured module.
#[derive(Debug, Clone)]
pub struct Scripts {
    prelude: String,
}

impl Scripts {
    /// Scripts importing `module` (a path or a module name).
    pub fn new(module: &str) -> Result<Self, Error> {
        let prelude = format!(
            "$ErrorActionPreference='Stop'\n$ProgressPreference='SilentlyContinue'\nImport-Module {}\n",
            ps_literal("lync.module", module)?
        );
        Ok(Scripts { prelude })
    }

    fn script(&self, body: &str) -> String {
        format!("{}{body}", self.prelude)
    }

    /// Every pool's Persistent Chat state: `[{Identity, PoolState}, ...]`.
    pub fn states(&self) -> String {
        self.script(&format!(
            "{JSON} @(Get-CsPersistentChatState | {})",
            state_projection()
        ))
    }

    /// Sets the state of the pool whose state Identity is `identity`, then reads it back.
    pub fn set_state(&self, identity: &str, state: PoolState) -> Result<String, Error> {
        let id = ps_literal("identity", identity)?;
        let state = ps_literal("pool state", state.as_str())?;
        Ok(self.script(&format!(
            "Set-CsPersistentChatState -Identity {id} -PoolState {state} -Force\n\
             {JSON} @(Get-CsPersistentChatState -Identity {id} | {})",
            state_projection()
        )))
    }

    /// The pool's Persistent Chat service(s) and pool object:
    /// `{"Services": [{Identity, PoolFqdn, ActiveServers}], "Pools": [{Fqdn, Computers}]}`.
    pub fn pool_servers(&self, pool: &str) -> Result<String, Error> {
        Ok(self.script(&self.pool_servers_query(pool)?))
    }

    fn pool_servers_query(&self, pool: &str) -> Result<String, Error> {
        let pool = ps_literal("pool", pool)?;
        let services = select(&[
            ("Identity", "Identity", Cast::Str),
            ("PoolFqdn", "PoolFqdn", Cast::Str),
            ("ActiveServers", ACTIVE_SERVERS_PROPERTY, Cast::StrArray),
        ]);
        let pools = select(&[
            ("Fqdn", "Fqdn", Cast::Str),
            ("Computers", "Computers", Cast::StrArray),
        ]);
        Ok(format!(
            "{JSON} @{{Services=@(Get-CsService -PersistentChatServer -PoolFqdn {pool} | {services});\
             Pools=@(Get-CsPool -Identity {pool} | {pools})}}"
        ))
    }

    /// Changes the active-server list of the service `service_identity`, then reads the pool back
    /// as [`Scripts::pool_servers`] does.
    pub fn set_active_servers(
        &self,
        service_identity: &str,
        change: &ActiveServersChange,
        pool: &str,
    ) -> Result<String, Error> {
        let id = ps_literal("identity", service_identity)?;
        let list = |servers: &[String]| -> Result<String, Error> {
            let quoted: Result<Vec<String>, Error> =
                servers.iter().map(|s| ps_literal("server", s)).collect();
            Ok(quoted?.join(","))
        };
        let modifier = match change {
            ActiveServersChange::Replace(s) => format!("@{{Replace={}}}", list(s)?),
            ActiveServersChange::Add(s) => format!("@{{Add={}}}", list(s)?),
            ActiveServersChange::Remove(s) => format!("@{{Remove={}}}", list(s)?),
            ActiveServersChange::Clear => "$null".to_string(),
        };
        Ok(self.script(&format!(
            "Set-CsPersistentChatActiveServer -Identity {id} -ActiveServers {modifier} -Force\n{}",
            self.pool_servers_query(pool)?
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_scripts() {
        let s = Scripts::new("Lync").unwrap();
        let prelude = "$ErrorActionPreference='Stop'\n$ProgressPreference='SilentlyContinue'\nImport-Module 'Lync'\n";
        assert_eq!(
            s.states(),
            format!(
                "{prelude}ConvertTo-Json -Compress -Depth 4 -InputObject @(Get-CsPersistentChatState | \
                 Select-Object -Property @{{n='Identity';e={{[string]$_.Identity}}}},\
                 @{{n='PoolState';e={{[string]$_.PoolState}}}})"
            )
        );
        let set = s
            .set_state("service: pc.contoso.com", PoolState::FailedOver)
            .unwrap();
        assert!(set.starts_with(&format!(
            "{prelude}Set-CsPersistentChatState -Identity 'service: pc.contoso.com' -PoolState 'FailedOver' -Force\n"
        )));
        let change = ActiveServersChange::Replace(vec!["a.c.com".into(), "b.c.com".into()]);
        let set = s
            .set_active_servers("PersistentChatServer:pc.c.com", &change, "pc.c.com")
            .unwrap();
        assert!(set.contains(
            "Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:pc.c.com' \
             -ActiveServers @{Replace='a.c.com','b.c.com'} -Force\n"
        ));
        assert!(set.contains("[string[]]$_.ActiveServers"));
        let clear = s
            .set_active_servers("x", &ActiveServersChange::Clear, "pc.c.com")
            .unwrap();
        assert!(clear.contains("-ActiveServers $null -Force"));
    }

    #[test]
    fn values_are_literals() {
        let s = Scripts::new(r"C:\Program Files\It's\Lync.psd1").unwrap();
        assert!(
            s.states()
                .contains(r"Import-Module 'C:\Program Files\It''s\Lync.psd1'")
        );
        let set = s
            .set_state("a'; Remove-Item x; '", PoolState::Normal)
            .unwrap();
        assert!(set.contains("-Identity 'a''; Remove-Item x; ''' -PoolState"));
        assert!(s.set_state("a\nb", PoolState::Normal).is_err());
    }
}

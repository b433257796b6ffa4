//! The agent's Lync backend (`failback_agent::exec::lync`) against the real `lyncsim` binary,
//! spawned exactly as the agent spawns powershell.exe: every operation, the Identity reused exactly
//! as read, hostile values arriving as literal text (checked in lyncsim's script log and store) or
//! refused before anything runs, typed errors for unknown identities, a wrong module, a missing
//! shell, unusable output and a slow shell, and concurrent agents sharing one CMS file.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use failback_agent::config::{LyncConfig, LyncProduct};
use failback_agent::error::{Error, ShellFailure};
use failback_agent::exec::lync::runner::Runner;
use failback_agent::exec::lync::{ActiveServersChange, LyncShell, PoolState};
use failback_tests::harness::process::bin;
use failback_tests::lyncsim::store::{Cms, LogEntry, Store};

const POOL: &str = "pc.contoso.com";
const DC1: [&str; 2] = ["pc01.dc1.contoso.com", "pc02.dc1.contoso.com"];
const DC2: [&str; 2] = ["pc01.dc2.contoso.com", "pc02.dc2.contoso.com"];

/// A CMS store in a temporary directory.
struct Lab {
    _dir: tempfile::TempDir,
    store: PathBuf,
}

impl Lab {
    /// A store holding `pool` with `identity` (plus, when `decoys`, pools whose names contain it).
    fn new(product: &str, identity: &str, decoys: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("cms.json");
        let lab = Lab { _dir: dir, store };
        lab.init(&[
            "--product",
            product,
            "--pool",
            POOL,
            "--identity",
            identity,
            "--servers",
            &DC1.join(","),
            "--servers-dc2",
            &DC2.join(","),
        ]);
        if decoys {
            lab.init(&["--pool", "xpc.contoso.com", "--servers", "x1.contoso.com"]);
            lab.init(&["--pool", "a.pc.contoso.com", "--servers", "a1.contoso.com"]);
        }
        lab
    }

    fn init(&self, args: &[&str]) {
        let out = std::process::Command::new(bin("lyncsim").unwrap())
            .arg("--store")
            .arg(&self.store)
            .arg("init")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn config(&self, product: LyncProduct, extra: &[&str], timeout: Duration) -> LyncConfig {
        let mut command = vec![
            bin("lyncsim").unwrap().display().to_string(),
            "--store".into(),
            self.store.display().to_string(),
            "--host".into(),
            "fe01.dc1.contoso.com".into(),
        ];
        command.extend(extra.iter().map(|s| s.to_string()));
        command.extend(
            LyncConfig::DEFAULT_COMMAND[1..]
                .iter()
                .map(|s| s.to_string()),
        );
        LyncConfig {
            command,
            timeout,
            ..LyncConfig::for_product(product)
        }
    }

    fn shell(&self) -> LyncShell {
        LyncShell::new(&self.config(LyncProduct::Lync2013, &[], Duration::from_secs(30))).unwrap()
    }

    fn cms(&self) -> Cms {
        Store::new(&self.store).load().unwrap()
    }

    fn log(&self) -> Vec<LogEntry> {
        Store::new(&self.store).read_log().unwrap()
    }

    fn pool(&self, fqdn: &str) -> failback_tests::lyncsim::store::Pool {
        self.cms()
            .pools
            .into_iter()
            .find(|p| p.fqdn == fqdn)
            .unwrap()
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn pool_state_is_read_and_its_identity_reused_exactly() {
    // The failback runbook's form, with a space; other pools whose FQDN contains ours.
    let lab = Lab::new("lync2013", "service: pc.contoso.com", true);
    let shell = lab.shell();
    let state = shell.pool_state("PC.Contoso.com").await.unwrap();
    assert_eq!(state.identity, "service: pc.contoso.com");
    assert_eq!(state.pool_state, PoolState::Normal);
    let log = lab.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].host, "fe01.dc1.contoso.com");
    assert!(log[0].script.starts_with(
        "$ErrorActionPreference='Stop'\n$ProgressPreference='SilentlyContinue'\n\
         Import-Module 'C:\\Program Files\\Common Files\\Microsoft Lync Server 2013\\Modules\\Lync\\Lync.psd1'\n"
    ));
    assert!(log[0].script.contains("Get-CsPersistentChatState |"));

    let after = shell
        .set_pool_state(POOL, PoolState::FailedOver)
        .await
        .unwrap();
    assert_eq!(after.pool_state, PoolState::FailedOver);
    assert_eq!(after.identity, "service: pc.contoso.com");
    assert_eq!(lab.pool(POOL).pool_state, "FailedOver");
    assert_eq!(lab.pool("xpc.contoso.com").pool_state, "Normal");
    let set = &lab.log()[2].script;
    assert!(
        set.contains("Set-CsPersistentChatState -Identity 'service: pc.contoso.com' -PoolState 'FailedOver' -Force\n"),
        "{set}"
    );
    assert!(set.contains("Get-CsPersistentChatState -Identity 'service: pc.contoso.com' |"));

    let back = shell.set_pool_state(POOL, PoolState::Normal).await.unwrap();
    assert_eq!(back.pool_state, PoolState::Normal);
    assert_eq!(lab.pool(POOL).pool_state, "Normal");
}

#[tokio::test]
async fn pools_not_named_exactly_are_not_found() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", true);
    let e = lab.shell().pool_state("c.contoso.com").await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Lync {
                retryable: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("service:pc.contoso.com"), "{e}");
}

#[tokio::test]
async fn sfb2015_module_and_pool_servers() {
    let lab = Lab::new("sfb2015", "PersistentChatServer:pc.contoso.com", false);
    let shell =
        LyncShell::new(&lab.config(LyncProduct::Sfb2015, &[], Duration::from_secs(30))).unwrap();
    let servers = shell.pool_servers(POOL).await.unwrap();
    assert_eq!(servers.pool_fqdn, POOL);
    assert_eq!(
        servers.service_identity,
        "PersistentChatServer:pc.contoso.com"
    );
    assert_eq!(
        servers.computers,
        strings(&[DC1[0], DC1[1], DC2[0], DC2[1]])
    );
    assert_eq!(servers.active_servers, Some(strings(&DC1)));
    assert!(lab.log()[0].script.contains("SkypeForBusiness.psd1'\n"));
    assert_eq!(
        shell.pool_state(POOL).await.unwrap().identity,
        "PersistentChatServer:pc.contoso.com"
    );

    // The wrong product's module is not on this host: a typed, non-retryable failure.
    let wrong = lab.shell();
    let e = wrong.pool_state(POOL).await.unwrap_err();
    match &e {
        Error::ShellFailed {
            failure, stderr, ..
        } => {
            assert_eq!(*failure, ShellFailure::InvalidArgument);
            assert!(stderr.contains("Lync.psd1' was not loaded"), "{stderr}");
        }
        other => panic!("{other}"),
    }
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn active_servers_replace_add_remove_clear() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", false);
    let shell = lab.shell();
    let set = |change| {
        let shell = shell.clone();
        async move { shell.set_active_servers(POOL, &change).await }
    };

    let r = set(ActiveServersChange::Replace(strings(&DC2)))
        .await
        .unwrap();
    assert_eq!(r.active_servers, Some(strings(&DC2)));
    assert_eq!(lab.pool(POOL).active_servers, strings(&DC2));
    let script = lab.log().last().unwrap().script.clone();
    assert!(
        script.contains(
            "Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:pc.contoso.com' \
             -ActiveServers @{Replace='pc01.dc2.contoso.com','pc02.dc2.contoso.com'} -Force\n"
        ),
        "{script}"
    );

    let r = set(ActiveServersChange::Remove(strings(&[DC2[0]])))
        .await
        .unwrap();
    assert_eq!(r.active_servers, Some(strings(&[DC2[1]])));
    // Case differs from the CMS spelling: still the same server.
    let r = set(ActiveServersChange::Add(strings(&["PC01.dc1.contoso.com"])))
        .await
        .unwrap();
    assert_eq!(r.active_servers, Some(strings(&[DC1[0], DC2[1]])));

    let r = set(ActiveServersChange::Clear).await.unwrap();
    assert_eq!(r.active_servers, None);
    assert!(lab.pool(POOL).active_servers.is_empty());
    assert!(lab.log().last().unwrap().script.contains(
        "Set-CsPersistentChatActiveServer -Identity 'PersistentChatServer:pc.contoso.com' -ActiveServers $null -Force\n"
    ));

    // A server outside the pool, or an empty list, is refused before any change is sent.
    let sent = lab.log().len();
    let e = set(ActiveServersChange::Replace(strings(&[
        "pc09.dc9.contoso.com",
    ])))
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidInput {
                field: "servers",
                ..
            }
        ),
        "{e}"
    );
    let e = set(ActiveServersChange::Add(Vec::new())).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let log = lab.log();
    assert_eq!(
        log.len(),
        sent + 1,
        "only the read of the first attempt ran"
    );
    assert!(!log.iter().skip(sent).any(|l| l.script.contains("Set-Cs")));
}

#[tokio::test]
async fn hostile_identity_from_the_shell_reaches_it_as_literal_text() {
    let hostile = "service:O'Brien \u{2019} $(Remove-Item C:\\x) `n \"q\"; Set-CsPersistentChatState -PoolState Normal # |:pc.contoso.com";
    let lab = Lab::new("lync2013", hostile, true);
    let shell = lab.shell();
    assert_eq!(shell.pool_state(POOL).await.unwrap().identity, hostile);
    let after = shell
        .set_pool_state(POOL, PoolState::FailedOver)
        .await
        .unwrap();
    assert_eq!(after.identity, hostile);
    // lyncsim matched the stored identity exactly: the literal arrived intact, and nothing else ran.
    assert_eq!(lab.pool(POOL).pool_state, "FailedOver");
    for decoy in ["xpc.contoso.com", "a.pc.contoso.com"] {
        assert_eq!(lab.pool(decoy).pool_state, "Normal");
    }
    let set = &lab.log()[2].script;
    let quoted = "'service:O''Brien \u{2019}\u{2019} $(Remove-Item C:\\x) `n \"q\"; Set-CsPersistentChatState -PoolState Normal # |:pc.contoso.com'";
    assert!(
        set.contains(&format!(
            "Set-CsPersistentChatState -Identity {quoted} -PoolState 'FailedOver' -Force\n"
        )),
        "{set}"
    );
}

#[tokio::test]
async fn hostile_arguments_are_refused_before_anything_runs() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com\n", false);
    let shell = lab.shell();
    for pool in [
        "pc.contoso.com'; Remove-Item x; '",
        "$(Remove-Item x).com",
        "pc.contoso.com`n",
        "pc.contoso.com\nx",
    ] {
        let e = shell.pool_state(pool).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidInput { field: "pool", .. }),
            "{e}"
        );
        assert!(!e.is_retryable());
    }
    let e = shell
        .set_active_servers(
            POOL,
            &ActiveServersChange::Add(strings(&["a.b;Remove-Item x"])),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidInput {
                field: "server",
                ..
            }
        ),
        "{e}"
    );
    assert!(lab.log().is_empty(), "nothing reached the shell");

    // An identity with a control character (here a newline) is read, but never sent back.
    assert!(shell.pool_state(POOL).await.is_ok());
    let e = shell
        .set_pool_state(POOL, PoolState::FailedOver)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidInput {
                field: "identity",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(lab.log().len(), 2);
    assert_eq!(lab.pool(POOL).pool_state, "Normal");

    // A module path with a quote arrives as one literal (the shell names it in its error).
    let mut config = lab.config(LyncProduct::Lync2013, &[], Duration::from_secs(30));
    config.module = Some("C:\\It's $(x)\\Lync.psd1".into());
    let e = LyncShell::new(&config)
        .unwrap()
        .pool_state(POOL)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("The specified module 'C:\\It's $(x)\\Lync.psd1' was not loaded"),
        "{e}"
    );
}

#[tokio::test]
async fn unknown_identity_is_a_typed_non_retryable_error_with_stderr() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", false);
    // A pool the CMS does not know: Get-CsPool fails with ObjectNotFound.
    let e = lab
        .shell()
        .pool_servers("gone.contoso.com")
        .await
        .unwrap_err();
    match &e {
        Error::ShellFailed {
            failure,
            stderr,
            exit,
        } => {
            assert_eq!(*failure, ShellFailure::UnknownIdentity);
            assert_eq!(exit, "1");
            assert!(
                stderr.contains("Management object not found for identity \"gone.contoso.com\""),
                "{stderr}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(!e.is_retryable());
    // The same through the runner, with an identity that is not the one Get- returned.
    let runner = Runner {
        command: lab
            .config(LyncProduct::Lync2013, &[], Duration::from_secs(30))
            .command,
        timeout: Duration::from_secs(30),
    };
    let e = runner
        .run("$ErrorActionPreference='Stop'\nImport-Module 'Lync'\nSet-CsPersistentChatState -Identity 'service: pc.contoso.com' -PoolState 'Normal' -Force")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShellFailed {
                failure: ShellFailure::UnknownIdentity,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("CategoryInfo          : ObjectNotFound"),
        "{e}"
    );
    // An unknown parameter: invalid argument, not retryable.
    let e = runner
        .run("$ErrorActionPreference='Stop'\nImport-Module 'Lync'\nGet-CsPool -Identity 'pc.contoso.com' -Bogus")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShellFailed {
                failure: ShellFailure::InvalidArgument,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("'Bogus'"), "{e}");
}

#[tokio::test]
async fn a_slow_shell_times_out_and_is_killed_before_it_acts() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", false);
    let config = lab.config(
        LyncProduct::Lync2013,
        &["--delay", "2s"],
        Duration::from_millis(300),
    );
    let runner = Runner {
        command: config.command.clone(),
        timeout: config.timeout,
    };
    let started = std::time::Instant::now();
    let e = runner
        .run("$ErrorActionPreference='Stop'\nImport-Module 'Lync'\nSet-CsPersistentChatState -Identity 'service:pc.contoso.com' -PoolState 'FailedOver' -Force")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ShellTimeout { .. }), "{e}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let e = LyncShell::new(&config)
        .unwrap()
        .pool_state(POOL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ShellTimeout { .. }), "{e}");
    // Killed during its delay: the change never happened.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(lab.pool(POOL).pool_state, "Normal");
    assert_eq!(lab.log().len(), 2);
}

#[tokio::test]
async fn missing_shell_and_unusable_output_are_typed() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", false);
    let mut config = lab.config(LyncProduct::Lync2013, &[], Duration::from_secs(5));
    config.command = vec![
        lab.store
            .with_file_name("no-such-powershell.exe")
            .display()
            .to_string(),
    ];
    let e = LyncShell::new(&config)
        .unwrap()
        .pool_state(POOL)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ShellSpawn { .. }), "{e}");
    assert!(!e.is_retryable());
    if cfg!(unix) && Path::new("/bin/echo").exists() {
        config.command = vec!["/bin/echo".into()];
        let e = LyncShell::new(&config)
            .unwrap()
            .pool_state(POOL)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ShellOutput { .. }), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_agents_do_not_lose_updates() {
    let lab = Lab::new("lync2013", "service:pc.contoso.com", false);
    lab.shell()
        .set_active_servers(POOL, &ActiveServersChange::Clear)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (i, server) in DC1.iter().chain(DC2.iter()).enumerate() {
        let config = lab.config(
            LyncProduct::Lync2013,
            &["--host", &format!("fe0{i}")],
            Duration::from_secs(30),
        );
        let server = server.to_string();
        tasks.push(tokio::spawn(async move {
            LyncShell::new(&config)
                .unwrap()
                .set_active_servers(POOL, &ActiveServersChange::Add(vec![server]))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        lab.pool(POOL).active_servers,
        strings(&[DC1[0], DC1[1], DC2[0], DC2[1]])
    );
    let hosts: std::collections::BTreeSet<String> = lab.log().into_iter().map(|l| l.host).collect();
    assert_eq!(hosts.len(), 5, "{hosts:?}");
}

//! Which server versions can read which backups. A backup set records the writer's product
//! version (HEADERONLY's SoftwareVersionMajor / Minor / Build). SQL Server restores a backup made
//! by its own or an older release, upgrading the database; a backup made by a newer release
//! (higher major.minor: 10.50 is newer than 10.00, as 2008 R2 is newer than 2008) is refused with
//! Msg 3169 by RESTORE DATABASE / LOG and VERIFYONLY, while HEADERONLY and FILELISTONLY still
//! read its header. The check is by release, not build: a 13.0.6300 backup restores on 13.0.4000.
//!
//! Not modelled: the lower bound (each release reads backups from a limited number of older
//! releases; SQL Server 2016 and later, for instance, no longer read SQL Server 2005 backups).
//! sqlsim instances are never configured older than 2012, so no backup can be that old.

use crate::sqlsim::tokens::ServerMessage;

/// `(major, minor, build)` of a `major.minor.build[.revision]` product version.
pub fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut it = version.trim().split('.').map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next()?.ok()?;
    let build = it.next()?.ok()?;
    if it.any(|r| r.is_err()) {
        return None;
    }
    Some((major, minor, build))
}

/// The version as 3169 words it: `15.00.2000`.
pub fn text((major, minor, build): (u32, u32, u32)) -> String {
    format!("{major}.{minor:02}.{build}")
}

/// True when a set written by `backup` is from a newer release than `server`.
pub fn is_newer(backup: (u32, u32, u32), server: (u32, u32, u32)) -> bool {
    (backup.0, backup.1) > (server.0, server.1)
}

/// Msg 3169 when `server` cannot read a set written by `backup`.
pub fn check(backup: (u32, u32, u32), server: (u32, u32, u32)) -> Result<(), ServerMessage> {
    if is_newer(backup, server) {
        return Err(ServerMessage::new(
            3169,
            1,
            16,
            format!(
                "The database was backed up on a server running version {}. That version is incompatible with this server, which is running version {}. Either restore the database on a server that supports the backup, or use a backup that is compatible with this server.",
                text(backup),
                text(server)
            ),
        ));
    }
    Ok(())
}

/// HEADERONLY's DatabaseVersion (the internal database version) of a release.
pub fn database_version(major: u32) -> i64 {
    match major {
        11 => 706,
        12 => 782,
        13 => 852,
        14 => 869,
        15 => 904,
        16 => 957,
        _ => 852,
    }
}

/// HEADERONLY's CompatibilityLevel: a release's default (`major * 10` from 2008 on).
pub fn compatibility_level(major: u32) -> i64 {
    if (10..=16).contains(&major) {
        major as i64 * 10
    } else {
        130
    }
}

/// The release name `@@VERSION` starts with.
pub fn release_name(major: u32, minor: u32) -> &'static str {
    match (major, minor) {
        (10, 50) => "2008 R2",
        (10, _) => "2008",
        (11, _) => "2012",
        (12, _) => "2014",
        (13, _) => "2016",
        (14, _) => "2017",
        (15, _) => "2019",
        (16, _) => "2022",
        _ => "2016",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_release_is_refused_with_sql_servers_text() {
        assert_eq!(parse("13.0.6300.2"), Some((13, 0, 6300)));
        assert_eq!(parse("15.0.2000"), Some((15, 0, 2000)));
        assert_eq!(parse("15"), None);
        assert_eq!(parse("a.b.c"), None);
        assert!(check((13, 0, 6300), (13, 0, 4000)).is_ok());
        assert!(check((12, 0, 2000), (13, 0, 6300)).is_ok());
        assert!(check((10, 50, 1600), (10, 0, 2573)).is_err());
        let m = check((16, 0, 1000), (15, 0, 2000)).unwrap_err();
        assert_eq!((m.number, m.state, m.class), (3169, 1, 16));
        assert!(
            m.message
                .starts_with("The database was backed up on a server running version 16.00.1000. That version is incompatible with this server, which is running version 15.00.2000.")
        );
    }
}

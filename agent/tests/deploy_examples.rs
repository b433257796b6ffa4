//! The example agent config in deploy/ is parsed with the real loader, so it never goes stale.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use failback_agent::config::AgentConfig;

#[test]
fn example_agent_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent.toml");
    let c = AgentConfig::load(&path).unwrap();
    assert_eq!(c.coordinators.len(), 2);
    assert_eq!(c.coordinators[0].name, "coord1.contoso.com");
    assert_eq!(c.capabilities(), vec!["sql", "files", "host", "liveness"]);
    let roots = c.files.map(|f| f.roots).unwrap_or_default();
    assert_eq!(
        roots,
        [r"D:\PChatLogShipCopy", r"\\fs01.contoso.com\pchat-ls"]
    );
}

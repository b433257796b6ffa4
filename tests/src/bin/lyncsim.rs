//! `lyncsim`: the lab's Lync Management Shell stand-in (see `failback_tests::lyncsim` for the
//! command line). Thin: collects the arguments, runs, prints, exits with the shell's code.

use std::io::Write;
use std::process::ExitCode;

use failback_tests::lyncsim;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "lyncsim: argument {a:?} is not valid Unicode"
                );
                return ExitCode::from(64);
            }
        }
    }
    let out = lyncsim::run(args, std::env::var(lyncsim::ENV_HOST).ok()).await;
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    ExitCode::from(u8::try_from(out.code).unwrap_or(1))
}

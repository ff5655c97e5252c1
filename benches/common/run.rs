//! The `main` of the bench binaries (`harness = false`): every bench parses its flags, runs
//! its measurements and ends the same way, so that a wrong flag exits with status 2 and a
//! failed or incomplete measurement with status 1, each with a line naming the bench.

use std::process::ExitCode;

/// Runs the bench `name` on `params` and returns the exit code: 2 when `params` is an
/// error (a wrong flag), 1 when `measure` fails or reports an incomplete run (`false`).
pub fn run<P>(
    name: &str,
    params: Result<P, String>,
    measure: impl FnOnce(&P) -> anyhow::Result<bool>,
) -> ExitCode {
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{name} bench: {e}");
            return ExitCode::from(2);
        }
    };
    match measure(&params) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name} bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

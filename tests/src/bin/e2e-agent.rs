//! The agent program, built inside the test crate so end-to-end tests can start it as a
//! process (`CARGO_BIN_EXE_e2e-agent`). It is `drivetag-agent`, byte for byte the same code.

fn main() -> std::process::ExitCode {
    drivetag_agent::cli::main()
}

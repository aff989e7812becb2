//! The server program, built inside the test crate so end-to-end tests can start it as a
//! process (`CARGO_BIN_EXE_e2e-server`). It is `drivetag-server`, the same code.

fn main() -> std::process::ExitCode {
    drivetag_server::cli::main()
}

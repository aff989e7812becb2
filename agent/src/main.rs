//! `drivetag-agent`: the command line lives in the library, so tests build the same program.

fn main() -> std::process::ExitCode {
    drivetag_agent::cli::main()
}
